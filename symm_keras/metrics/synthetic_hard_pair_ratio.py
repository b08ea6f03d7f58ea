"""``SyntheticHardPairRatio``: share of synthetic points among the hardest pairs (Symm Fig. 7).

Gu & Ko (AAAI 2020, §4.3, "Visualization and Ratio of Feature Points")::

    ratio(syn) = #synthetic / (#original + #synthetic)

counted over the hardest negative pairs selected by hardest-pair pooling
(:mod:`symm_keras.ops.pooling`) for every ordered pair of different classes
``(i, k)`` of each P×2 batch. ``count="both"`` (default) counts both points of
each selected pair (each is original or synthetic); ``count="negative"`` only
the point of class ``k``. The metric recomputes the synthesis and pooling
from the model output (``y_pred``), so configure it like the loss: N-pair /
angular pool similarities (``metric="similarity"``, ``pairs="official"`` or
``"paper"``), triplet / lifted pool distances of L2-normalised embeddings
(``metric="squared_euclidean"`` / ``"euclidean"``, ``pairs="paper"``).

It accumulates counts over the batches of an epoch like every Keras metric, so
``model.fit`` logs the running ratio (and TensorBoard plots it per epoch).
"""

import keras
from keras import ops

from symm_keras.ops.dtypes import as_float
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pooling import METRICS, pool_gram, set_pairs_for, symm_pk_batch, synthetic_selection_counts
from symm_keras.ops.synthesis import SYNTHESIS_DEFAULTS, class_pair_negatives, synthesis_options

COUNTS = ("both", "negative")


@keras.saving.register_keras_serializable(package="symm_keras")
class SyntheticHardPairRatio(keras.metrics.Metric):
    """#synthetic / (#original + #synthetic) among the selected hardest negative pairs.

    Use as ``model.compile(loss=SymmNPairLoss(), metrics=[SyntheticHardPairRatio()])``
    with integer labels as targets and embeddings as the model output.

    Args:
        metric: ``"similarity"`` (default), ``"squared_euclidean"`` or ``"euclidean"``.
        pairs: ``"official"`` (default, as :class:`SymmNPairLoss`) or ``"paper"``.
        count: ``"both"`` (default) or ``"negative"`` (see the module docstring).
        synthesis_alpha, synthesis_beta, formula, force_norm: synthesis
            (default: the symmetric point), as the loss's.
    """

    def __init__(
        self,
        metric="similarity",
        pairs="official",
        count="both",
        name="synthetic_hard_pair_ratio",
        dtype=None,
        **synthesis,
    ):
        self._synthesis = synthesis_options(type(self).__name__, **synthesis)
        super().__init__(name=name, dtype=dtype)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
        set_pairs_for(pairs)
        if count not in COUNTS:
            raise ValueError(f"count must be one of {COUNTS}, got {count!r}.")
        self.metric, self.pairs, self.count = metric, pairs, count
        self.synthesis = {**SYNTHESIS_DEFAULTS, **synthesis}
        self.synthetic = self.add_variable(shape=(), initializer="zeros", name="synthetic", dtype="float32")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add one batch's counts; ``sample_weight`` is not meaningful per pair and is ignored."""
        labels = flatten_labels(y_true, y_pred)
        x = ops.cast(as_float(y_pred), "float32")
        batch = symm_pk_batch(labels, x, **self._synthesis)
        pair_labels, pair_valid = batch.pair_labels, batch.pair_valid
        _, selection = pool_gram(batch.gram, metric=self.metric, pairs=self.pairs, top_k=1)
        synthetic = ops.cast(synthetic_selection_counts(selection, self.pairs, self.count), "float32")
        negatives = ops.cast(class_pair_negatives(pair_labels, pair_valid), "float32")
        points_per_pair = 2.0 if self.count == "both" else 1.0
        self.synthetic.assign_add(ops.sum(synthetic * negatives))
        self.total.assign_add(points_per_pair * ops.sum(negatives))

    def result(self):
        return self.synthetic / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.synthetic.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "metric": self.metric,
            "pairs": self.pairs,
            "count": self.count,
            **self.synthesis,
        }
