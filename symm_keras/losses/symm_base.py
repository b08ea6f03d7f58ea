"""What the five Symm losses share: the synthesis options, the paired batch and
per-sample values (Gu & Ko, AAAI 2020, §3.1–3.2).

Every Symm loss takes the synthesis options of eq. 1–2 under the same names:
``synthesis_alpha`` (α, how far the point moves; 2 = the mirror image),
``synthesis_beta`` (β, its scale), ``formula`` (``"paper"`` eq. 2 or
``"released"``) and ``force_norm`` (Fig. 4's ablation), see
:func:`symm_keras.ops.synthesis.mirror_points`. ``alpha``/``beta`` are refused
with an error naming the new option, so an angle (``angle=``) or a margin
(``margin=``) can never be taken for a synthesis coefficient.

Batches: each class seen at least twice gives one positive pair (its first and
second image, :func:`symm_keras.ops.pairs.pair_indices`); for a P×2 batch those
are all images. Other images are unused (zero per-sample value and gradient).
A loss that is a sum of per-class terms over a normaliser has per-sample
values (:func:`class_per_sample`): each class's term shared by its two rows.
"""

import collections

from keras import ops

from symm_keras.losses.base import RENAMED_OPTIONS, EmbeddingLoss, as_float
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pairs import pairs_to_rows
from symm_keras.ops.distances import safe_sqrt
from symm_keras.ops.pooling import pool_gram, symm_pk_batch
from symm_keras.ops.reductions import per_sample_values
from symm_keras.ops.synthesis import SYNTHESIS_DEFAULTS, class_pair_negatives, synthesis_options


def check_renamed(owner, kwargs):
    """Raise ``ValueError`` for an option that was renamed (see ``RENAMED_OPTIONS``)."""
    for old, new in RENAMED_OPTIONS.items():
        if old in kwargs:
            raise ValueError(f"{owner} has no option {old!r}: {new}.")


def symm_batch(y_true, y_pred, synthesis):
    """``(SymmBatch, x)``: the paired batch with its synthesis Gram tensor, and the
    float embeddings (``synthesis``: the loss-level options)."""
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    return symm_pk_batch(labels, x, **synthesis_options("the Symm loss", **synthesis)), x


SymmPairs = collections.namedtuple("SymmPairs", "batch x positive pooled negatives")


def symm_pairs(y_true, y_pred, metric, synthesis, top_k=1):
    """The Symm transform of a batch's pair matrix (§3.2), shared by the pair-based Symm losses.

    Classes (pairs ``(a_i, p_i)``) replace images: ``positive[i]`` is the
    positive pair's value (``a_i·p_i``, or their (squared) distance) and
    ``pooled[i, k]`` the hardest of the 16 pairs between the four points
    ``a, p, a', p'`` of classes ``i`` and ``k`` (max similarity / min distance,
    ``top_k`` hardest on a last axis when > 1); ``negatives[i, k]`` marks the real
    negative class pairs. ``metric``: ``"similarity"``, ``"squared_euclidean"``
    or ``"euclidean"``. A baseline pair loss written on ``(positive, pooled)``
    becomes its Symm form.
    """
    batch, x = symm_batch(y_true, y_pred, synthesis)
    pooled, _ = pool_gram(batch.gram, metric=metric, pairs="paper", top_k=top_k)
    if metric == "similarity":
        positive = ops.sum(batch.anchors * batch.positives, axis=-1)
    else:
        positive = ops.sum(ops.square(batch.anchors - batch.positives), axis=-1)
        positive = safe_sqrt(positive) if metric == "euclidean" else positive
    return SymmPairs(batch, x, positive, pooled, class_pair_negatives(batch.pair_labels, batch.pair_valid))


def class_per_sample(class_terms, batch, count, x):
    """Per-sample values (``(B,)``, ``B`` rows of ``x``) of ``Σ_i class_terms[i] / count``;
    each class's term is shared by its two rows, padding slots add nothing."""
    return per_sample_values(pairs_to_rows(class_terms, batch.pairs, ops.shape(x)[0]), count)


class SymmLoss(EmbeddingLoss):
    """Base of the Symm losses: the synthesis options (module docstring), validated once
    and saved in the config with the loss's own ``params``."""

    batch_layout = None  # a base class: the losses below set "pk"
    images_per_class = 2

    def __init__(self, fn, name, **params):
        check_renamed(type(self).__name__, params)
        synthesis = {key: params.pop(key, default) for key, default in SYNTHESIS_DEFAULTS.items()}
        synthesis_options(type(self).__name__, **synthesis)
        super().__init__(fn, name=name, **params, **synthesis)
