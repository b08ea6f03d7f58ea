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
Synthesis options, batch layouts and per-sample values:
:mod:`symm_keras.losses.symm_base`.

Parts (:func:`symm_semihard_triplet_loss_parts`): ``hinge`` (the loss itself)
and the diagnostic ``active_share`` (logged as ``symm_semihard_active_share``):
the share of classes (positive pairs) whose hinge is non-zero.
"""

from keras import ops

from symm_keras.losses._validation import check_choice, check_nonnegative
from symm_keras.losses.base import hinge_parts, register
from symm_keras.losses.symm_base import SymmHingeLoss, class_per_sample, flat_candidates, symm_pairs
from symm_keras.ops.pooling import check_top_k
from symm_keras.losses.semihard_triplet import semi_hard_negative
from symm_keras.ops.reductions import safe_mean

SYMM_DISTANCE_METRICS = {"L2": "euclidean", "squared-L2": "squared_euclidean"}


def _symm_semihard_terms(y_true, y_pred, margin, distance_metric, top_k, synthesis):
    """``(per-sample values (B,), hinge (N,), valid classes (N,))``."""
    margin = check_nonnegative("margin", margin)
    check_choice("distance_metric", distance_metric, tuple(SYMM_DISTANCE_METRICS))
    metric = SYMM_DISTANCE_METRICS[distance_metric]
    batch, x, d_ap, pooled, negatives = symm_pairs(y_true, y_pred, metric, synthesis, top_k)
    pooled, negatives = flat_candidates(pooled, negatives)
    semi_hard = semi_hard_negative(ops.expand_dims(d_ap, 1), pooled, negatives, empty_value=0.0)
    hinge = ops.relu(margin + d_ap - semi_hard)
    per_class = ops.where(batch.pair_valid, hinge, ops.zeros_like(hinge))
    count = ops.sum(ops.cast(batch.pair_valid, x.dtype))
    return class_per_sample(per_class, batch, count, x), hinge, batch.pair_valid


def symm_semihard_triplet_loss_parts(y_true, y_pred, margin=1.0, distance_metric="L2", top_k=1, **synthesis):
    """``{"loss", "hinge", "active_share"}`` of :func:`symm_semihard_triplet_loss`."""
    return hinge_parts(*_symm_semihard_terms(y_true, y_pred, margin, distance_metric, top_k, synthesis))


def symm_semihard_triplet_loss_per_sample(y_true, y_pred, margin=1.0, distance_metric="L2", top_k=1, **synthesis):
    """``(B,)`` per-sample values of :func:`symm_semihard_triplet_loss` (mean = the loss)."""
    return _symm_semihard_terms(y_true, y_pred, margin, distance_metric, top_k, synthesis)[0]


def symm_semihard_triplet_loss(y_true, y_pred, margin=1.0, distance_metric="L2", top_k=1, **synthesis):
    """Symm + semi-hard triplet loss of a P×2 batch (see the module docstring).

    Args:
        y_true, y_pred: integer labels ``(B,)``/``(B, 1)`` of a P×2 batch (other layouts:
            :mod:`symm_keras.losses.symm_base`) and embeddings ``(B, D)``.
        margin: ``m`` (default 1.0, as TF Addons).
        distance_metric: ``"L2"`` (default) or ``"squared-L2"``.
        top_k: hardest pairs per class pair used as candidates (default 1).
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``,
            ``force_norm`` (:mod:`symm_keras.losses.symm_base`).
    """
    return safe_mean(
        symm_semihard_triplet_loss_per_sample(y_true, y_pred, margin, distance_metric, top_k, **synthesis)
    )


@register
class SymmSemiHardTripletLoss(SymmHingeLoss):
    """Symm + semi-hard triplet loss; see :func:`symm_semihard_triplet_loss`.

    Args:
        margin: ``m`` (default 1.0).
        distance_metric: ``"L2"`` (default) or ``"squared-L2"``.
        top_k: hardest pairs per class pair (default 1).
        **kwargs: synthesis options (default: the symmetric point), ``reduction``, ``dtype``.
    """

    batch_layout = "pk"
    parts_fn = staticmethod(symm_semihard_triplet_loss_parts)
    parts_prefix = "symm_semihard"

    def __init__(self, margin=1.0, distance_metric="L2", top_k=1, name="symm_semihard_triplet_loss", **kwargs):
        check_nonnegative("margin", margin)
        check_choice("distance_metric", distance_metric, tuple(SYMM_DISTANCE_METRICS))
        check_top_k(top_k)
        super().__init__(
            symm_semihard_triplet_loss_per_sample,
            name,
            margin=margin,
            distance_metric=distance_metric,
            top_k=top_k,
            **kwargs,
        )
