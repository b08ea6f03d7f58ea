"""symm_keras: Keras 3 deep metric learning.

Symmetrical Synthesis (Gu & Ko, AAAI 2020), DAMLRRM (Xu et al., CVPR 2019) and
Smart Mining (Harwood et al., ICCV 2017), with the baselines they build on,
tf.data pipelines for CUB-200-2011 / Cars196 / SOP and retrieval evaluation.

``import symm_keras`` registers every saveable class with Keras — the losses,
metrics, layers, the model layers of :mod:`symm_keras.models` and the
multi-device wrappers of :mod:`symm_keras.distribute` — so
``keras.models.load_model("m.keras")`` needs nothing else. Those packages
import only Keras and numpy (not TensorFlow, unless it is Keras's backend, nor
numba): the cost of ``import symm_keras`` is essentially ``import keras``. The other subpackages (data pipelines, evaluation, mining, callbacks)
are imported on first attribute access: ``symm_keras.data.ClassBalancedSampler``
just works.
"""

import importlib

from symm_keras import distribute, layers, losses, metrics, models  # noqa: F401  (register the saveable classes)

__version__ = "0.1.0"

_SUBPACKAGES = (
    "callbacks",
    "data",
    "distribute",
    "evaluation",
    "layers",
    "losses",
    "metrics",
    "mining",
    "models",
    "ops",
)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
