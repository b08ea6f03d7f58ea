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
batch) contributes 0. The paper uses L2-normalised embeddings.

Parts (:func:`symm_lifted_structure_loss_parts`): ``hinge`` (the loss itself)
and the diagnostic ``active_share`` (logged as ``symm_lifted_active_share``):
the share of classes (positive pairs) with ``J > 0``.
"""

import math

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, active_share, as_float, register
from symm_keras.ops.distances import safe_sqrt
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pooling import check_top_k, pool_gram, symm_pk_batch
from symm_keras.ops.reductions import masked_any, masked_logsumexp
from symm_keras.ops.synthesis import check_synthesis_args, class_pair_negatives

IMAGES_PER_CLASS = 2


def _symm_lifted_terms(y_true, y_pred, margin, top_k, alpha, beta, formula, force_norm):
    """``(loss, J (N,), counted (N,), valid classes (N,))`` of eq. 6."""
    margin = check_nonnegative("margin", margin)
    check_synthesis_args(alpha, beta, formula, force_norm)
    check_top_k(top_k)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    batch = symm_pk_batch(labels, x, alpha=alpha, beta=beta, formula=formula, force_norm=force_norm)
    pair_labels, pair_valid = batch.pair_labels, batch.pair_valid
    pooled, _ = pool_gram(batch.gram, metric="euclidean", pairs="paper", top_k=top_k)
    d_ij = safe_sqrt(ops.sum(ops.square(batch.anchors - batch.positives), axis=-1))
    negatives = class_pair_negatives(pair_labels, pair_valid)
    n = ops.shape(pooled)[0]
    if top_k > 1:
        negatives = ops.broadcast_to(ops.expand_dims(negatives, -1), ops.shape(pooled))
        pooled = ops.reshape(pooled, (n, -1))
        negatives = ops.reshape(negatives, (n, -1))
    # Σ over the K points of each negative class = log K + Σ over classes.
    lse = masked_logsumexp(margin - pooled, negatives, axis=1) + math.log(IMAGES_PER_CLASS)
    j = lse + d_ij
    per_class = ops.square(ops.relu(j))
    counted = ops.logical_and(pair_valid, masked_any(negatives, axis=1))
    total = ops.sum(ops.where(counted, per_class, ops.zeros_like(per_class)))
    loss = total / ops.maximum(ops.sum(ops.cast(pair_valid, x.dtype)), 1.0)
    return loss, j, counted, pair_valid


def symm_lifted_structure_loss_parts(
    y_true,
    y_pred,
    margin=1.0,
    top_k=1,
    alpha=2.0,
    beta=1.0,
    formula="paper",
    force_norm=None,
):
    """``{"loss", "hinge", "active_share"}`` of :func:`symm_lifted_structure_loss`."""
    loss, j, counted, valid = _symm_lifted_terms(
        y_true, y_pred, margin, top_k, alpha, beta, formula, force_norm
    )
    active = ops.where(counted, j, ops.zeros_like(j))
    return {"loss": loss, "hinge": loss, "active_share": active_share(active, valid)}


def symm_lifted_structure_loss(
    y_true,
    y_pred,
    margin=1.0,
    top_k=1,
    alpha=2.0,
    beta=1.0,
    formula="paper",
    force_norm=None,
):
    """Symm + lifted structured loss (eq. 6 as read in the module docstring).

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice.
        y_pred: embeddings ``(B, D)``.
        margin: ``m`` (default 1.0).
        top_k: hardest pairs per class pair (default 1).
        alpha, beta, formula, force_norm: synthesis, see
            :func:`symm_keras.ops.synthesis.mirror_points`.
    """
    return _symm_lifted_terms(y_true, y_pred, margin, top_k, alpha, beta, formula, force_norm)[0]


@register
class SymmLiftedStructureLoss(EmbeddingLoss):
    """Symm + lifted structured loss (eq. 6); see :func:`symm_lifted_structure_loss`.

    Args:
        margin: ``m`` (default 1.0).
        top_k: hardest pairs per class pair (default 1).
        alpha, beta, formula, force_norm: synthesis (default: symmetric point).
    """

    batch_layout = "pk"
    images_per_class = IMAGES_PER_CLASS
    zero_without_positives = True
    parts_fn = staticmethod(symm_lifted_structure_loss_parts)
    summands = ("hinge",)
    diagnostics = ("active_share",)
    parts_prefix = "symm_lifted"

    def __init__(
        self,
        margin=1.0,
        top_k=1,
        alpha=2.0,
        beta=1.0,
        formula="paper",
        force_norm=None,
        name="symm_lifted_structure_loss",
        **kwargs,
    ):
        check_nonnegative("margin", margin)
        check_synthesis_args(alpha, beta, formula, force_norm)
        check_top_k(top_k)
        super().__init__(
            symm_lifted_structure_loss,
            name=name,
            margin=margin,
            top_k=top_k,
            alpha=alpha,
            beta=beta,
            formula=formula,
            force_norm=force_norm,
            **kwargs,
        )
