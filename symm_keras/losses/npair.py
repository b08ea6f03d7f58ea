"""Multi-class N-pair loss (Sohn 2016; Symm paper eq. 7).

Pair convention of the released Symm code and ``tf.contrib``'s ``npairs_loss``
(see :func:`symm_keras.ops.split_anchor_positive`): in a P×2 batch the first
image of each class in batch order is the anchor ``a_i``, the second the
positive ``p_i``. With logits ``S_ij = a_i · p_j``::

    L = 1/P Σ_i log(1 + Σ_{j≠i} exp(S_ij − S_ii))          (eq. 7)
      = 1/P Σ_i CE(softmax(S_i·), i)

plus the official regulariser on the raw (not L2-normalised) features::

    L2 = 0.25 · λ · ( mean_i ‖a_i‖² + mean_i ‖p_i‖² ),   λ = 0.002 by default

(``l2_reg=0`` switches it off). ``symmetric=True`` averages the anchor→positive
cross-entropy with the positive→anchor one (columns of ``S``).

Parts (:func:`npair_loss_parts`, logged as ``npair_softmax``, ``npair_l2``):
``softmax`` (eq. 7, the cross-entropy term) + ``l2`` (the regulariser) = loss.
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pairs import split_anchor_positive
from symm_keras.ops.reductions import safe_mean


def pair_l2_regularizer(anchors, positives, l2_reg):
    """``0.25 · l2_reg · (mean‖a‖² + mean‖p‖²)``, the official N-pair/angular term."""
    norms = safe_mean(ops.sum(ops.square(anchors), axis=1)) + safe_mean(
        ops.sum(ops.square(positives), axis=1)
    )
    return 0.25 * l2_reg * norms


def softmax_cross_entropy_diagonal(logits):
    """Mean over rows of ``CE(softmax(logits[i]), i)`` — the target is the diagonal."""
    diagonal = ops.diagonal(logits)
    return safe_mean(ops.logsumexp(logits, axis=1) - diagonal)


def npair_loss_parts(y_true, y_pred, l2_reg=0.002, symmetric=False):
    """``{"loss", "softmax", "l2"}`` of :func:`npair_loss`: ``loss = softmax + l2``."""
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    anchors, positives, _ = split_anchor_positive(labels, x)
    logits = ops.matmul(anchors, ops.transpose(positives))
    softmax = softmax_cross_entropy_diagonal(logits)
    if symmetric:
        softmax = 0.5 * (softmax + softmax_cross_entropy_diagonal(ops.transpose(logits)))
    l2 = pair_l2_regularizer(anchors, positives, l2_reg)
    return {"loss": softmax + l2, "softmax": softmax, "l2": l2}


def npair_loss(y_true, y_pred, l2_reg=0.002, symmetric=False):
    """Multi-class N-pair loss of Symm eq. 7 with the official L2 term.

    Args:
        y_true: integer class labels, shape ``(B,)`` or ``(B, 1)``; every class
            exactly twice (P×2 batch), in any order.
        y_pred: raw embeddings, shape ``(B, D)`` (not L2-normalised, as in the paper).
        l2_reg: ``λ`` of the regulariser (default 0.002; 0 switches it off).
        symmetric: also average the positive→anchor direction.

    Returns:
        Scalar loss.

    Raises:
        ValueError: the batch is not P×2 (checked when labels are concrete).
    """
    return npair_loss_parts(y_true, y_pred, l2_reg, symmetric)["loss"]


@register
class NPairLoss(EmbeddingLoss):
    """Multi-class N-pair loss (Symm eq. 7); see :func:`npair_loss`.

    Args:
        l2_reg: ``λ`` of ``0.25·λ·(mean‖a‖²+mean‖p‖²)`` (default 0.002, 0 = off).
        symmetric: average both directions (default False, as the released code).
    """

    batch_layout = "pk"
    images_per_class = 2
    zero_without_positives = True
    parts_fn = staticmethod(npair_loss_parts)
    summands = ("softmax", "l2")
    parts_prefix = "npair"

    def __init__(self, l2_reg=0.002, symmetric=False, name="npair_loss", **kwargs):
        check_nonnegative("l2_reg", l2_reg)
        super().__init__(
            npair_loss, name=name, l2_reg=l2_reg, symmetric=bool(symmetric), **kwargs
        )
