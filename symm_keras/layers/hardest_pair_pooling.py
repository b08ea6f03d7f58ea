"""``HardestPairPooling`` layer: hardest negative pair per class pair (Symm §3.2).

For a P×2 batch it builds the four point sets ``A, P, A', P'`` (originals and
their mirror images, eq. 1–2), gets all their similarities from ONE matrix
product (:func:`symm_keras.ops.pooling.synthesis_gram`) and reduces, for every pair of classes ``(i, k)``, over the
candidate pairs: max similarity (``metric="similarity"``, eq. 8) or min
(squared) Euclidean distance (eq. 4, 6). See :mod:`symm_keras.ops.pooling`
for the 16 ``"paper"`` and 6 ``"official"`` candidate pairs and ``top_k``.

Output ``(P, P)`` (or ``(P, P, top_k)``, hardest first), classes in order of
first appearance in the batch; the diagonal pools same-class pairs and is not
a negative. With ``return_selection=True`` it also returns the number of
synthetic points (0–2) in each selected pair (the quantity behind paper
Fig. 7, see :class:`symm_keras.metrics.SyntheticHardPairRatio`).
"""

import keras

from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pooling import (
    METRICS,
    check_top_k,
    pool_gram,
    set_pairs_for,
    symm_pk_batch,
    synthetic_selection_counts,
)
from symm_keras.ops.synthesis import pop_synthesis_options


@keras.saving.register_keras_serializable(package="symm_keras")
class HardestPairPooling(keras.layers.Layer):
    """Pool the hardest of the original + synthetic pairs of every class pair.

    Call as ``layer(embeddings, labels)`` (P×2 batch).

    Args:
        metric: ``"similarity"`` (default), ``"squared_euclidean"`` or ``"euclidean"``.
        pairs: ``"paper"`` (16 pairs, default) or ``"official"`` (6 combinations).
        top_k: hardest pairs kept per class pair (default 1).
        return_selection: also return synthetic-point counts of the selected pairs.
        synthesis_alpha, synthesis_beta, formula, force_norm: synthesis
            (default: the symmetric point; :mod:`symm_keras.ops.synthesis`).
    """

    def __init__(self, metric="similarity", pairs="paper", top_k=1, return_selection=False, **kwargs):
        synthesis, self._synthesis = pop_synthesis_options(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
        set_pairs_for(pairs)
        check_top_k(top_k, limit=len(set_pairs_for(pairs)))
        self.metric, self.pairs, self.top_k = metric, pairs, top_k
        self.return_selection = bool(return_selection)
        self.synthesis = synthesis

    def call(self, embeddings, labels):
        labels = flatten_labels(labels, embeddings)
        batch = symm_pk_batch(labels, embeddings, **self._synthesis)
        pooled, selection = pool_gram(batch.gram, metric=self.metric, pairs=self.pairs, top_k=self.top_k)
        if self.return_selection:
            return pooled, synthetic_selection_counts(selection, self.pairs)
        return pooled

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        batch = embeddings_shape[0]
        classes = None if batch is None else batch // 2
        shape = (classes, classes) + ((self.top_k,) if self.top_k > 1 else ())
        return (shape, shape) if self.return_selection else shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "metric": self.metric,
                "pairs": self.pairs,
                "top_k": self.top_k,
                "return_selection": self.return_selection,
                **self.synthesis,
            }
        )
        return config
