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

Parts (:func:`symm_triplet_loss_parts`): ``hinge`` (the loss itself) and the
diagnostic ``active_share`` (logged as ``symm_triplet_active_share``): the
share of (class, negative class[, k-th hardest pair]) terms with a non-zero hinge.
"""

from keras import ops

from symm_keras.losses._validation import check_choice, check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, active_share, as_float, register
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pooling import check_top_k, pool_gram, symm_pk_batch
from symm_keras.ops.synthesis import check_synthesis_args, class_pair_negatives

TRIPLET_AVERAGES = ("pairs", "triplets")
IMAGES_PER_CLASS = 2


def _symm_triplet_terms(y_true, y_pred, margin, average, top_k, alpha, beta, formula, force_norm):
    """``(loss, hinge, negatives)``: the terms of eq. 4 and which are real."""
    margin = check_nonnegative("margin", margin)
    check_choice("average", average, TRIPLET_AVERAGES)
    check_synthesis_args(alpha, beta, formula, force_norm)
    check_top_k(top_k)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    batch = symm_pk_batch(labels, x, alpha=alpha, beta=beta, formula=formula, force_norm=force_norm)
    pair_labels, pair_valid = batch.pair_labels, batch.pair_valid
    positive_d2 = ops.sum(ops.square(batch.anchors - batch.positives), axis=-1)
    pooled, _ = pool_gram(batch.gram, metric="squared_euclidean", pairs="paper", top_k=top_k)
    negatives = class_pair_negatives(pair_labels, pair_valid)
    if top_k > 1:
        positive_d2 = ops.expand_dims(positive_d2, -1)
        negatives = ops.expand_dims(negatives, -1)
    hinge = ops.relu(ops.expand_dims(positive_d2, 1) - pooled + margin)
    hinge = ops.where(negatives, hinge, ops.zeros_like(hinge))
    # Each ordered pair (i, j) and each of the K negative points of class k.
    total = float(IMAGES_PER_CLASS * IMAGES_PER_CLASS) * ops.sum(hinge)
    if average == "pairs":
        count = float(IMAGES_PER_CLASS) * ops.sum(ops.cast(pair_valid, x.dtype))
    else:
        count = float(IMAGES_PER_CLASS * IMAGES_PER_CLASS) * ops.sum(
            ops.cast(negatives, x.dtype) * ops.ones_like(hinge)
        )
    return total / ops.maximum(count, 1.0), hinge, negatives


def symm_triplet_loss_parts(
    y_true,
    y_pred,
    margin=0.2,
    average="pairs",
    top_k=1,
    alpha=2.0,
    beta=1.0,
    formula="paper",
    force_norm=None,
):
    """``{"loss", "hinge", "active_share"}`` of :func:`symm_triplet_loss`."""
    loss, hinge, negatives = _symm_triplet_terms(
        y_true, y_pred, margin, average, top_k, alpha, beta, formula, force_norm
    )
    return {"loss": loss, "hinge": loss, "active_share": active_share(hinge, negatives)}


def symm_triplet_loss(
    y_true,
    y_pred,
    margin=0.2,
    average="pairs",
    top_k=1,
    alpha=2.0,
    beta=1.0,
    formula="paper",
    force_norm=None,
):
    """Symm + triplet loss (eq. 4) of a P×2 batch.

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice.
        y_pred: embeddings ``(B, D)``.
        margin: ``m`` in squared-distance units (default 0.2).
        average: ``"pairs"`` (÷|P|, eq. 4) or ``"triplets"`` (÷ #terms).
        top_k: hardest pairs kept per class pair (1 = eq. 4).
        alpha, beta, formula, force_norm: synthesis, see
            :func:`symm_keras.ops.synthesis.mirror_points`.
    """
    return _symm_triplet_terms(
        y_true, y_pred, margin, average, top_k, alpha, beta, formula, force_norm
    )[0]


@register
class SymmTripletLoss(EmbeddingLoss):
    """Symm + triplet loss (eq. 4); see :func:`symm_triplet_loss`.

    Args:
        margin: ``m`` (default 0.2), squared Euclidean distance.
        average: ``"pairs"`` (default, eq. 4) or ``"triplets"``.
        top_k: hardest pairs per class pair (default 1).
        alpha, beta, formula, force_norm: synthesis (defaults: the paper's
            symmetric point, eq. 2 with α = 2, β = 1).
    """

    batch_layout = "pk"
    images_per_class = IMAGES_PER_CLASS
    zero_without_positives = True
    parts_fn = staticmethod(symm_triplet_loss_parts)
    summands = ("hinge",)
    diagnostics = ("active_share",)
    parts_prefix = "symm_triplet"

    def __init__(
        self,
        margin=0.2,
        average="pairs",
        top_k=1,
        alpha=2.0,
        beta=1.0,
        formula="paper",
        force_norm=None,
        name="symm_triplet_loss",
        **kwargs,
    ):
        check_nonnegative("margin", margin)
        check_choice("average", average, TRIPLET_AVERAGES)
        check_synthesis_args(alpha, beta, formula, force_norm)
        check_top_k(top_k)
        super().__init__(
            symm_triplet_loss,
            name=name,
            margin=margin,
            average=average,
            top_k=top_k,
            alpha=alpha,
            beta=beta,
            formula=formula,
            force_norm=force_norm,
            **kwargs,
        )
