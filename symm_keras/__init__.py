"""symm_keras: Keras 3 deep metric learning.

Symmetrical Synthesis (Gu & Ko, AAAI 2020), DAMLRRM (Xu et al., CVPR 2019) and
Smart Mining (Harwood et al., ICCV 2017), with the baselines they build on,
tf.data pipelines for CUB-200-2011 / Cars196 / SOP and retrieval evaluation.

Subpackages are imported on first attribute access, so ``import symm_keras``
stays cheap and ``symm_keras.losses.SymmNPairLoss`` just works.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "callbacks",
    "data",
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
