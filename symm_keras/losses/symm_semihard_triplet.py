"""Semi-hard triplet loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, §3.2).

The paper combines Symm with the FaceNet semi-hard triplet loss ("Symm +
Triplet†", Tables 1–3) without writing the equation. Here it is defined as
:func:`symm_keras.losses.semihard_triplet.semihard_triplet_loss` (TF Addons
semantics) with the per-point negatives replaced by the *pooled* negatives of
eq. 4: for class ``i`` with positive pair ``(a_i, p_i)``, ``d_ap = D(a_i, p_i)``,
and for every other class ``k`` the hardest distance over the 16 pairs
between the four points (original + synthetic) of the two classes,
``n_ik = min_{(p,n)∈N̂(l_i,l_k)} D_pn``::

    semi(i) = min { n_ik : k ≠ i, n_ik > d_ap }   if that set is not empty
            = max { n_ik : k ≠ i }               otherwise (hardest of the easy)
            = 0                                   if the batch has one class

    L = 1/|P| Σ_{(a,p)∈P} [ m + d_ap − semi(i) ]_+

Both orientations ``(a, p)`` and ``(p, a)`` of a pair give the same term, so
the mean over ordered pairs equals the mean over classes. ``top_k > 1`` adds
the ``k`` hardest pairs of each class pair to the candidates (Fig. 5).
``distance_metric`` is ``"L2"`` (default, Euclidean) or ``"squared-L2"``.

Parts (:func:`symm_semihard_triplet_loss_parts`): ``hinge`` (the loss itself)
and the diagnostic ``active_share`` (logged as ``symm_semihard_active_share``):
the share of classes (positive pairs) whose hinge is non-zero.
"""

from keras import ops

from symm_keras.losses._validation import check_choice, check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, active_share, as_float, register
from symm_keras.ops.distances import safe_sqrt
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pooling import check_top_k, pool_gram, symm_pk_batch
from symm_keras.ops.reductions import masked_any, masked_max, masked_min
from symm_keras.ops.synthesis import check_synthesis_args, class_pair_negatives

SYMM_DISTANCE_METRICS = {"L2": "euclidean", "squared-L2": "squared_euclidean"}


def _symm_semihard_terms(y_true, y_pred, margin, distance_metric, top_k, alpha, beta, formula, force_norm):
    """``(loss, hinge (N,), valid classes (N,))``."""
    margin = check_nonnegative("margin", margin)
    check_choice("distance_metric", distance_metric, tuple(SYMM_DISTANCE_METRICS))
    check_synthesis_args(alpha, beta, formula, force_norm)
    check_top_k(top_k)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    batch = symm_pk_batch(labels, x, alpha=alpha, beta=beta, formula=formula, force_norm=force_norm)
    pair_labels, pair_valid = batch.pair_labels, batch.pair_valid
    metric = SYMM_DISTANCE_METRICS[distance_metric]
    pooled, _ = pool_gram(batch.gram, metric=metric, pairs="paper", top_k=top_k)
    d2_ap = ops.sum(ops.square(batch.anchors - batch.positives), axis=-1)
    if metric == "euclidean":
        d_ap = safe_sqrt(d2_ap)
    else:
        d_ap = d2_ap
    negatives = class_pair_negatives(pair_labels, pair_valid)
    n = ops.shape(pooled)[0]
    if top_k > 1:
        negatives = ops.broadcast_to(ops.expand_dims(negatives, -1), ops.shape(pooled))
        pooled = ops.reshape(pooled, (n, -1))
        negatives = ops.reshape(negatives, (n, -1))
    outside = ops.logical_and(negatives, ops.greater(pooled, ops.expand_dims(d_ap, 1)))
    nearest_outside = masked_min(pooled, outside, axis=1)
    hardest_inside = masked_max(pooled, negatives, axis=1, empty_value=0.0)
    semi_hard = ops.where(masked_any(outside, axis=1), nearest_outside, hardest_inside)
    hinge = ops.relu(margin + d_ap - semi_hard)
    total = ops.sum(ops.where(pair_valid, hinge, ops.zeros_like(hinge)))
    return total / ops.maximum(ops.sum(ops.cast(pair_valid, x.dtype)), 1.0), hinge, pair_valid


def symm_semihard_triplet_loss_parts(
    y_true,
    y_pred,
    margin=1.0,
    distance_metric="L2",
    top_k=1,
    alpha=2.0,
    beta=1.0,
    formula="paper",
    force_norm=None,
):
    """``{"loss", "hinge", "active_share"}`` of :func:`symm_semihard_triplet_loss`."""
    loss, hinge, valid = _symm_semihard_terms(
        y_true, y_pred, margin, distance_metric, top_k, alpha, beta, formula, force_norm
    )
    return {"loss": loss, "hinge": loss, "active_share": active_share(hinge, valid)}


def symm_semihard_triplet_loss(
    y_true,
    y_pred,
    margin=1.0,
    distance_metric="L2",
    top_k=1,
    alpha=2.0,
    beta=1.0,
    formula="paper",
    force_norm=None,
):
    """Symm + semi-hard triplet loss of a P×2 batch (see the module docstring).

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice.
        y_pred: embeddings ``(B, D)``.
        margin: ``m`` (default 1.0, as TF Addons).
        distance_metric: ``"L2"`` (default) or ``"squared-L2"``.
        top_k: hardest pairs per class pair used as candidates (default 1).
        alpha, beta, formula, force_norm: synthesis, see
            :func:`symm_keras.ops.synthesis.mirror_points`.
    """
    return _symm_semihard_terms(
        y_true, y_pred, margin, distance_metric, top_k, alpha, beta, formula, force_norm
    )[0]


@register
class SymmSemiHardTripletLoss(EmbeddingLoss):
    """Symm + semi-hard triplet loss; see :func:`symm_semihard_triplet_loss`.

    Args:
        margin: ``m`` (default 1.0).
        distance_metric: ``"L2"`` (default) or ``"squared-L2"``.
        top_k: hardest pairs per class pair (default 1).
        alpha, beta, formula, force_norm: synthesis (default: symmetric point).
    """

    batch_layout = "pk"
    images_per_class = 2
    zero_without_positives = True
    parts_fn = staticmethod(symm_semihard_triplet_loss_parts)
    summands = ("hinge",)
    diagnostics = ("active_share",)
    parts_prefix = "symm_semihard"

    def __init__(
        self,
        margin=1.0,
        distance_metric="L2",
        top_k=1,
        alpha=2.0,
        beta=1.0,
        formula="paper",
        force_norm=None,
        name="symm_semihard_triplet_loss",
        **kwargs,
    ):
        check_nonnegative("margin", margin)
        check_choice("distance_metric", distance_metric, tuple(SYMM_DISTANCE_METRICS))
        check_synthesis_args(alpha, beta, formula, force_norm)
        check_top_k(top_k)
        super().__init__(
            symm_semihard_triplet_loss,
            name=name,
            margin=margin,
            distance_metric=distance_metric,
            top_k=top_k,
            alpha=alpha,
            beta=beta,
            formula=formula,
            force_norm=force_norm,
            **kwargs,
        )
