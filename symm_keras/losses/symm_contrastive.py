"""Contrastive loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, §3.2 applied to
Hadsell et al. 2006, eq. 4).

The paper pools the hardest of the 16 pairs between the four points ``a, p, a',
p'`` of two classes for each pair-based loss (eq. 4, 6, 8); this is the same
transform (:func:`symm_keras.losses.symm_base.symm_pairs`) under the contrastive
loss. In a P×2 batch every negative pair of images ``(b, c)`` takes its class
pair's pooled distance ``D̂_ik = min_{(p,n)∈N̂(l_i,l_k)} D_pn``; positive pairs
keep ``D(a_i, p_i)``. Averaged, as the baseline, over all unordered image pairs
(``P`` positive, ``4·P(P−1)/2`` negative)::

    L = 1/|Q| ( Σ_i ½ D(a_i, p_i)² + 4 Σ_{i<k} ½ [m − D̂_ik]_+² ),   |Q| = P + 2P(P−1)

so without synthesis (``D̂`` the original distance) it is
:func:`symm_keras.losses.contrastive.contrastive_loss` of the batch. Synthesis
options, other layouts and per-sample values: :mod:`symm_keras.losses.symm_base`.
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import register
from symm_keras.losses.symm_base import SymmLoss, class_per_sample, symm_pairs
from symm_keras.ops.reductions import safe_mean


def _symm_contrastive_per_sample(y_true, y_pred, margin, synthesis):
    margin = check_nonnegative("margin", margin)
    batch, x, d2, pooled, negatives = symm_pairs(y_true, y_pred, "euclidean", synthesis)
    d2 = ops.square(d2)
    negative = ops.where(negatives, ops.square(ops.relu(margin - pooled)), ops.zeros_like(pooled))
    valid = ops.cast(batch.pair_valid, x.dtype)
    # Class i's share: its positive pair and half of its 4 image pairs with each class k.
    per_class = 0.5 * (valid * d2 + 2.0 * ops.sum(negative, axis=1))
    classes = ops.sum(valid)
    return class_per_sample(per_class, batch, classes + 2.0 * classes * (classes - 1.0), x)


def symm_contrastive_loss_per_sample(y_true, y_pred, margin=1.0, **synthesis):
    """``(B,)`` per-sample values of :func:`symm_contrastive_loss` (their mean is the loss)."""
    return _symm_contrastive_per_sample(y_true, y_pred, margin, synthesis)


def symm_contrastive_loss(y_true, y_pred, margin=1.0, **synthesis):
    """Symm + contrastive loss of a P×2 batch (module docstring).

    Args:
        y_true, y_pred: integer labels ``(B,)``/``(B, 1)`` of a P×2 batch (other layouts:
            :mod:`symm_keras.losses.symm_base`) and embeddings ``(B, D)``.
        margin: ``m`` in Euclidean units (default 1.0, as the baseline).
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``, ``force_norm``.
    """
    return safe_mean(symm_contrastive_loss_per_sample(y_true, y_pred, margin, **synthesis))


def symm_contrastive_loss_parts(y_true, y_pred, margin=1.0, **synthesis):
    """``{"loss"}`` of :func:`symm_contrastive_loss` (one summand: the loss itself)."""
    loss = symm_contrastive_loss(y_true, y_pred, margin, **synthesis)
    return {"loss": loss, "hinge": loss}


@register
class SymmContrastiveLoss(SymmLoss):
    """Symm + contrastive loss; see :func:`symm_contrastive_loss`.

    Args:
        margin: ``m`` (default 1.0).
        **kwargs: synthesis options (default: the symmetric point), ``reduction``, ``dtype``.
    """

    batch_layout = "pk"
    parts_fn = staticmethod(symm_contrastive_loss_parts)
    summands = ("hinge",)
    parts_prefix = "symm_contrastive"

    def __init__(self, margin=1.0, name="symm_contrastive_loss", **kwargs):
        check_nonnegative("margin", margin)
        super().__init__(symm_contrastive_loss_per_sample, name, margin=margin, **kwargs)
