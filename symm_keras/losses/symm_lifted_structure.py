"""Lifted structured loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, eq. 6).

Eq. 6 is garbled in the paper's text; it is read (docs/architecture.md) as eq. 5 with the
negative distance min-pooled over the 16 negative pairs ``N̂(l_i, l_k)``
between the four points (original + synthetic) of classes ``l_i`` and ``l_k``::

    J_ij = log Σ_{k: l_k≠l_i} exp(m − min_{(p,n)∈N̂(l_i,l_k)} D_pn) + D_ij

    L = 1/|P| Σ_{(i,j)∈P} [ J_ij ]_+²

with Euclidean ``D``. The pooled set already contains the negatives of both
``i`` and ``j`` (the four points of the class), so eq. 5's second sum is
absorbed. As in eq. 3–5, ``k`` runs over the negative *points*: each negative
class enters once per image (twice for K = 2) with the same pooled distance.
Both orientations of a pair give the same term, so the mean over ``P`` is the
mean over classes. ``top_k > 1`` adds the ``k`` hardest pairs of every class
pair as separate terms (Fig. 5). A class without negatives (single-class
batch) contributes 0. The paper uses L2-normalised embeddings. Synthesis
options, batch layouts and per-sample values: :mod:`symm_keras.losses.symm_base`.

Parts (:func:`symm_lifted_structure_loss_parts`): ``hinge`` (the loss itself)
and the diagnostic ``active_share`` (logged as ``symm_lifted_active_share``):
the share of classes (positive pairs) with ``J > 0``.
"""

import math

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import hinge_parts, register
from symm_keras.losses.symm_base import SymmHingeLoss, class_per_sample, flat_candidates, symm_pairs
from symm_keras.ops.pooling import check_top_k
from symm_keras.ops.reductions import masked_any, masked_logsumexp, safe_mean

IMAGES_PER_CLASS = 2


def _symm_lifted_terms(y_true, y_pred, margin, top_k, synthesis):
    """``(per-sample values (B,), J where counted else 0 (N,), valid classes (N,))`` of eq. 6."""
    margin = check_nonnegative("margin", margin)
    batch, x, d_ij, pooled, negatives = symm_pairs(y_true, y_pred, "euclidean", synthesis, top_k)
    pooled, negatives = flat_candidates(pooled, negatives)
    # Σ over the K points of each negative class = log K + Σ over classes.
    lse = masked_logsumexp(margin - pooled, negatives, axis=1) + math.log(IMAGES_PER_CLASS)
    j = lse + d_ij
    per_class = ops.square(ops.relu(j))
    counted = ops.logical_and(batch.pair_valid, masked_any(negatives, axis=1))
    per_class = ops.where(counted, per_class, ops.zeros_like(per_class))
    count = ops.sum(ops.cast(batch.pair_valid, x.dtype))
    active = ops.where(counted, j, ops.zeros_like(j))
    return class_per_sample(per_class, batch, count, x), active, batch.pair_valid


def symm_lifted_structure_loss_parts(y_true, y_pred, margin=1.0, top_k=1, **synthesis):
    """``{"loss", "hinge", "active_share"}`` of :func:`symm_lifted_structure_loss`."""
    return hinge_parts(*_symm_lifted_terms(y_true, y_pred, margin, top_k, synthesis))


def symm_lifted_structure_loss_per_sample(y_true, y_pred, margin=1.0, top_k=1, **synthesis):
    """``(B,)`` per-sample values of :func:`symm_lifted_structure_loss` (mean = the loss)."""
    return _symm_lifted_terms(y_true, y_pred, margin, top_k, synthesis)[0]


def symm_lifted_structure_loss(y_true, y_pred, margin=1.0, top_k=1, **synthesis):
    """Symm + lifted structured loss (eq. 6 as read in the module docstring).

    Args:
        y_true, y_pred: integer labels ``(B,)``/``(B, 1)`` of a P×2 batch (other layouts:
            :mod:`symm_keras.losses.symm_base`) and embeddings ``(B, D)``.
        margin: ``m`` (default 1.0).
        top_k: hardest pairs per class pair (default 1).
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``,
            ``force_norm`` (:mod:`symm_keras.losses.symm_base`).
    """
    return safe_mean(symm_lifted_structure_loss_per_sample(y_true, y_pred, margin, top_k, **synthesis))


@register
class SymmLiftedStructureLoss(SymmHingeLoss):
    """Symm + lifted structured loss (eq. 6); see :func:`symm_lifted_structure_loss`.

    Args:
        margin: ``m`` (default 1.0).
        top_k: hardest pairs per class pair (default 1).
        **kwargs: synthesis options (default: the symmetric point), ``reduction``, ``dtype``.
    """

    batch_layout = "pk"
    parts_fn = staticmethod(symm_lifted_structure_loss_parts)
    parts_prefix = "symm_lifted"

    def __init__(self, margin=1.0, top_k=1, name="symm_lifted_structure_loss", **kwargs):
        check_nonnegative("margin", margin)
        check_top_k(top_k)
        super().__init__(symm_lifted_structure_loss_per_sample, name, margin=margin, top_k=top_k, **kwargs)
