"""``DAMLRRMLossPart``: the parts of the DAMLRRM objective as Keras metrics.

Each is a :class:`symm_keras.metrics.LossPart` of a
:class:`symm_keras.losses.DAMLRRMLoss` built from the same options (Xu et al.,
CVPR 2019, eq. 4–6; see :func:`symm_keras.losses.damlrrm.damlrrm_loss_parts`).
"""

import keras

from symm_keras.losses.damlrrm import _LOSS_OPTIONS, PARTS, DAMLRRMLoss
from symm_keras.metrics.loss_part import LossPart


@keras.saving.register_keras_serializable(package="symm_keras")
class DAMLRRMLossPart(LossPart):
    """Batch-mean of one part of the DAMLRRM objective, for ``model.compile(metrics=...)``.

    :class:`symm_keras.metrics.LossPart` of a :class:`DAMLRRMLoss` built from
    the arguments. ``part`` is one of ``loss``, ``graph_loss``,
    ``shuffled_loss``, ``graph_violations``, ``shuffled_violations``,
    ``violating_pairs``, ``mean_tree_edge`` (see :func:`damlrrm_loss_parts`).
    ``loss_options`` are the loss's own arguments (``boundary``, ``margin``,
    ``neat_size``, ``images_per_class``, ``terms``, ``positive_pairs``, with
    :class:`DAMLRRMLoss`'s defaults) and must match the loss so the parts
    describe the optimised objective; they end up in TensorBoard through
    ``keras.callbacks.TensorBoard``.
    """

    def __init__(self, part="graph_loss", name=None, dtype=None, **loss_options):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}.")
        # The paper's alpha / beta fail in DAMLRRMLoss, with the names to use.
        unknown = sorted(set(loss_options) - set(_LOSS_OPTIONS) - set(DAMLRRMLoss.renamed_options))
        if unknown:
            raise TypeError(f"DAMLRRMLossPart got unknown loss options {unknown}; expected some of {_LOSS_OPTIONS}.")
        loss = DAMLRRMLoss(**loss_options)
        super().__init__(loss, part, name=name or f"damlrrm_{part}", dtype=dtype)
        self.loss_options = {key: value for key, value in loss.get_config().items() if key in _LOSS_OPTIONS}

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "part": self.part, **self.loss_options}


def damlrrm_metrics(
    parts=("graph_loss", "shuffled_loss", "violating_pairs", "mean_tree_edge"), **loss_options
):
    """One :class:`DAMLRRMLossPart` per part, ready for ``model.compile(metrics=...)``.

    ``loss_options`` are the loss's own arguments (``boundary``, ``margin``,
    ``neat_size``, ``images_per_class``, ``terms``, ``positive_pairs``).
    """
    return [DAMLRRMLossPart(part, **loss_options) for part in parts]
