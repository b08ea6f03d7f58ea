"""Triplet loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, eq. 4).

For a P×2 batch, each class ``i`` has the positive pair ``(a_i, p_i)`` and,
with the synthetic points, the four points ``a_i, p_i, a'_i, p'_i``
(:mod:`symm_keras.ops.synthesis`). Eq. 4 min-pools the squared distance over
the 16 negative pairs ``N̂(l_i, l_k)`` between the four points of class ``i``
and those of class ``k`` (one matrix product, :mod:`symm_keras.ops.pooling`)::

    L = 1/|P| Σ_{(i,j)∈P} Σ_{k: l_k≠l_i} [ D_ij² − min_{(p,n)∈N̂(l_i,l_k)} D_pn² + m ]_+

As in eq. 3 (:func:`symm_keras.losses.triplet.triplet_loss`), ``P`` holds the
ordered positive pairs and ``k`` runs over the negative *points*, so each
negative class enters once per image (twice for K = 2) with the same pooled
distance; ``average="triplets"`` divides by the number of those terms
instead of ``|P|``. ``top_k > 1`` keeps the ``k`` hardest pairs of each class
pair as separate negative terms (paper Fig. 5). The paper uses L2-normalised
embeddings (end the model with :class:`symm_keras.layers.L2Normalize`).
Synthesis options, batch layouts and per-sample values: :mod:`symm_keras.losses.symm_base`.

Parts (:func:`symm_triplet_loss_parts`): ``hinge`` (the loss itself) and the
diagnostic ``active_share`` (logged as ``symm_triplet_active_share``): the
share of (class, negative class[, k-th hardest pair]) terms with a non-zero hinge.
"""

from keras import ops

from symm_keras.losses._validation import check_choice, check_nonnegative
from symm_keras.losses.base import hinge_parts, register
from symm_keras.losses.symm_base import SymmHingeLoss, class_per_sample, symm_pairs
from symm_keras.ops.pooling import check_top_k
from symm_keras.ops.reductions import safe_mean

TRIPLET_AVERAGES = ("pairs", "triplets")
IMAGES_PER_CLASS = 2


def _symm_triplet_terms(y_true, y_pred, margin, average, top_k, synthesis):
    """``(per-sample values (B,), hinge, negatives)``: the terms of eq. 4 and which are real."""
    margin = check_nonnegative("margin", margin)
    check_choice("average", average, TRIPLET_AVERAGES)
    batch, x, positive_d2, pooled, negatives = symm_pairs(y_true, y_pred, "squared_euclidean", synthesis, top_k)
    if top_k > 1:
        positive_d2 = ops.expand_dims(positive_d2, -1)
        negatives = ops.expand_dims(negatives, -1)
    hinge = ops.relu(ops.expand_dims(positive_d2, 1) - pooled + margin)
    hinge = ops.where(negatives, hinge, ops.zeros_like(hinge))
    # Each ordered pair (i, j) and each of the K negative points of class k.
    k2 = float(IMAGES_PER_CLASS * IMAGES_PER_CLASS)
    per_class = k2 * ops.sum(ops.reshape(hinge, (ops.shape(hinge)[0], -1)), axis=1)
    if average == "pairs":
        count = float(IMAGES_PER_CLASS) * ops.sum(ops.cast(batch.pair_valid, x.dtype))
    else:
        count = k2 * ops.sum(ops.cast(negatives, x.dtype) * ops.ones_like(hinge))
    return class_per_sample(per_class, batch, count, x), hinge, negatives


def symm_triplet_loss_parts(y_true, y_pred, margin=0.2, average="pairs", top_k=1, **synthesis):
    """``{"loss", "hinge", "active_share"}`` of :func:`symm_triplet_loss`."""
    return hinge_parts(*_symm_triplet_terms(y_true, y_pred, margin, average, top_k, synthesis))


def symm_triplet_loss_per_sample(y_true, y_pred, margin=0.2, average="pairs", top_k=1, **synthesis):
    """``(B,)`` per-sample values of :func:`symm_triplet_loss` (their mean is the loss)."""
    return _symm_triplet_terms(y_true, y_pred, margin, average, top_k, synthesis)[0]


def symm_triplet_loss(y_true, y_pred, margin=0.2, average="pairs", top_k=1, **synthesis):
    """Symm + triplet loss (eq. 4) of a P×2 batch.

    Args:
        y_true, y_pred: integer labels ``(B,)``/``(B, 1)`` of a P×2 batch (other layouts:
            :mod:`symm_keras.losses.symm_base`) and embeddings ``(B, D)``.
        margin: ``m`` in squared-distance units (default 0.2).
        average: ``"pairs"`` (÷|P|, eq. 4) or ``"triplets"`` (÷ #terms).
        top_k: hardest pairs kept per class pair (1 = eq. 4).
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``,
            ``force_norm`` (:mod:`symm_keras.losses.symm_base`).
    """
    return safe_mean(symm_triplet_loss_per_sample(y_true, y_pred, margin, average, top_k, **synthesis))


@register
class SymmTripletLoss(SymmHingeLoss):
    """Symm + triplet loss (eq. 4); see :func:`symm_triplet_loss`.

    Args:
        margin: ``m`` (default 0.2), squared Euclidean distance.
        average: ``"pairs"`` (default, eq. 4) or ``"triplets"``.
        top_k: hardest pairs per class pair (default 1).
        **kwargs: synthesis options (default: the symmetric point, α = 2, β = 1),
            ``reduction``, ``dtype``.
    """

    batch_layout = "pk"
    parts_fn = staticmethod(symm_triplet_loss_parts)
    parts_prefix = "symm_triplet"

    def __init__(self, margin=0.2, average="pairs", top_k=1, name="symm_triplet_loss", **kwargs):
        check_nonnegative("margin", margin)
        check_choice("average", average, TRIPLET_AVERAGES)
        check_top_k(top_k)
        super().__init__(
            symm_triplet_loss_per_sample, name, margin=margin, average=average, top_k=top_k, **kwargs
        )
