"""Lifted structured loss (Oh Song et al. 2016; Symm paper eq. 5).

For every positive pair ``{i, j}`` (unordered, ``l_i = l_j``) with Euclidean
distances ``D``::

    J_ij = log( Σ_{k: l_k≠l_i} exp(m − D_ik) + Σ_{k: l_k≠l_j} exp(m − D_jk) ) + D_ij

    L = 1/(2|P|) Σ_{{i,j}∈P} [ J_ij ]_+²

(Gu & Ko, AAAI 2020, eq. 5; Oh Song et al. CVPR 2016, eq. 4). The two sums are
combined in log space (``logaddexp`` of two masked log-sum-exps), so it stays
finite for any distances. A pair with no negative in the batch has
``J = −∞`` and contributes 0; no positive pair → 0. Per sample
(:func:`lifted_structure_loss_per_sample`): row ``i`` holds the terms of its
pairs, scaled so that the batch mean is ``L``.

Parts (:func:`lifted_structure_loss_parts`): ``hinge`` (the loss itself) and
the diagnostic ``active_share`` (logged as ``lifted_active_share``): the share
of positive pairs with ``J_ij > 0`` (those with a non-zero term).
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, hinge_parts, register
from symm_keras.ops.distances import pairwise_distances
from symm_keras.ops.labels import flatten_labels, negative_mask, positive_mask
from symm_keras.ops.reductions import masked_any, masked_count, masked_logsumexp, per_sample_values, safe_mean


def _logaddexp(a, b):
    """``log(e^a + e^b)``, stable; written out because the JAX backend's
    ``ops.logaddexp`` loses precision in float64 (relative error ~1e-8)."""
    high = ops.maximum(a, b)
    return high + ops.log1p(ops.exp(-ops.abs(a - b)))


def _lifted_terms(y_true, y_pred, margin):
    """``(per-sample values (B,), J (B, B), counted, positive pairs (B, B))`` of eq. 5."""
    margin = check_nonnegative("margin", margin)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    d = pairwise_distances(x)
    positive = positive_mask(labels)
    negative = negative_mask(labels)
    # Per row: log Σ_{k negative of i} exp(m − D_ik).
    row_lse = masked_logsumexp(margin - d, negative, axis=1)
    has_negative = masked_any(negative, axis=1)
    j = _logaddexp(ops.expand_dims(row_lse, 1), ops.expand_dims(row_lse, 0)) + d
    # Both members of a positive pair share the same negatives.
    counted = ops.logical_and(positive, ops.expand_dims(has_negative, 1))
    per_pair = ops.square(ops.relu(j))
    # Ordered pairs count each unordered pair twice: Σ_ordered / (2·|P_ordered|)
    # equals Σ_unordered / (2·|P|) of eq. 5.
    per_row = ops.sum(ops.where(counted, per_pair, ops.zeros_like(per_pair)), axis=1)
    return per_sample_values(per_row, 2.0 * masked_count(positive, dtype=x.dtype)), j, counted, positive


def lifted_structure_loss_parts(y_true, y_pred, margin=1.0):
    """``{"loss", "hinge", "active_share"}`` of :func:`lifted_structure_loss`."""
    per_sample, j, counted, positive = _lifted_terms(y_true, y_pred, margin)
    # Over every positive pair: one without negatives is counted as inactive.
    return hinge_parts(per_sample, ops.where(counted, j, ops.zeros_like(j)), positive)


def lifted_structure_loss(y_true, y_pred, margin=1.0):
    """Lifted structured loss of Symm eq. 5.

    Args:
        y_true: integer class labels, shape ``(B,)`` or ``(B, 1)``.
        y_pred: embeddings, shape ``(B, D)``.
        margin: ``m`` (default 1.0, as Oh Song et al.), Euclidean units.

    Returns:
        Scalar loss; 0 with zero gradient when there is no positive pair.
    """
    return safe_mean(lifted_structure_loss_per_sample(y_true, y_pred, margin))


def lifted_structure_loss_per_sample(y_true, y_pred, margin=1.0):
    """``(B,)`` per-sample values of :func:`lifted_structure_loss` (mean = the loss)."""
    return _lifted_terms(y_true, y_pred, margin)[0]


@register
class LiftedStructureLoss(EmbeddingLoss):
    """Lifted structured loss (Symm eq. 5); see :func:`lifted_structure_loss`.

    Args:
        margin: ``m`` (default 1.0).
    """

    batch_layout = "pk"
    images_per_class = None
    zero_without_positives = True
    parts_fn = staticmethod(lifted_structure_loss_parts)
    summands = ("hinge",)
    diagnostics = ("active_share",)
    parts_prefix = "lifted"

    def __init__(self, margin=1.0, name="lifted_structure_loss", **kwargs):
        check_nonnegative("margin", margin)
        super().__init__(lifted_structure_loss_per_sample, name=name, margin=margin, **kwargs)
