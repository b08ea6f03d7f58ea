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

Any batch layout is defined (:func:`symm_keras.ops.pair_indices`): each class
seen at least twice gives one pair (its first and second image), the other
images are unused (zero per-sample value and gradient) and ``P`` counts the
pairs. Per sample (:func:`npair_loss_per_sample`): each pair's term
(cross-entropy + its L2 share ``0.25·λ·(‖a_i‖² + ‖p_i‖²)``) is shared by its
two rows, scaled so that the batch mean is the loss.

Parts (:func:`npair_loss_parts`, logged as ``npair_softmax``, ``npair_l2``):
``softmax`` (eq. 7, the cross-entropy term) + ``l2`` (the regulariser) = loss.
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pairs import pair_indices, pairs_to_rows, take_pairs
from symm_keras.ops.reductions import masked_logsumexp, masked_mean, per_sample_values


def pair_l2_terms(anchors, positives, l2_reg):
    """``0.25 · l2_reg · (‖a_i‖² + ‖p_i‖²)`` per pair; their mean over pairs is the
    official N-pair/angular term ``0.25·λ·(mean‖a‖² + mean‖p‖²)``."""
    return 0.25 * l2_reg * (ops.sum(ops.square(anchors), axis=1) + ops.sum(ops.square(positives), axis=1))


def softmax_cross_entropy_diagonal(logits, valid):
    """``CE(softmax(logits[i, valid]), i)`` per row ``i`` — the target is the diagonal.

    Only the columns of valid pairs enter the softmax; rows of padding slots
    give 0 (the callers mask them out).
    """
    columns = ops.logical_and(ops.expand_dims(valid, 0), ops.ones_like(logits, dtype="bool"))
    ce = masked_logsumexp(logits, columns, axis=1) - ops.diagonal(logits)
    return ops.where(valid, ce, ops.zeros_like(ce))


def paired_batch(y_true, y_pred):
    """``(pairs, anchors, positives)`` of any batch (module docstring)."""
    pairs = pair_indices(flatten_labels(y_true, y_pred))
    return (pairs,) + take_pairs(as_float(y_pred), pairs)


def pair_per_sample(pair_terms, pairs, y_pred):
    """Per-sample values of a loss that is the mean of ``pair_terms`` over valid pairs."""
    count = ops.sum(ops.cast(pairs.valid, pair_terms.dtype))
    return per_sample_values(pairs_to_rows(pair_terms, pairs, ops.shape(y_pred)[0]), count)


def npair_loss_parts(y_true, y_pred, l2_reg=0.002, symmetric=False):
    """``{"loss", "softmax", "l2"}`` of :func:`npair_loss`: ``loss = softmax + l2``."""
    pairs, softmax, l2 = _npair_terms(y_true, y_pred, l2_reg, symmetric)
    loss = masked_mean(softmax + l2, pairs.valid)
    return {"loss": loss, "softmax": masked_mean(softmax, pairs.valid), "l2": masked_mean(l2, pairs.valid)}


def _npair_terms(y_true, y_pred, l2_reg, symmetric):
    """``(pairs, cross-entropy per pair, L2 term per pair)``."""
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    pairs, anchors, positives = paired_batch(y_true, y_pred)
    logits = ops.matmul(anchors, ops.transpose(positives))
    softmax = softmax_cross_entropy_diagonal(logits, pairs.valid)
    if symmetric:
        softmax = 0.5 * (softmax + softmax_cross_entropy_diagonal(ops.transpose(logits), pairs.valid))
    return pairs, softmax, pair_l2_terms(anchors, positives, l2_reg)


def npair_loss_per_sample(y_true, y_pred, l2_reg=0.002, symmetric=False):
    """``(B,)`` per-sample values of :func:`npair_loss` (their mean is the loss)."""
    pairs, softmax, l2 = _npair_terms(y_true, y_pred, l2_reg, symmetric)
    return pair_per_sample(softmax + l2, pairs, y_pred)


def npair_loss(y_true, y_pred, l2_reg=0.002, symmetric=False):
    """Multi-class N-pair loss of Symm eq. 7 with the official L2 term.

    Args:
        y_true: integer class labels, shape ``(B,)`` or ``(B, 1)``; a P×2 batch
            (every class exactly twice, any order), other layouts as in the
            module docstring.
        y_pred: raw embeddings, shape ``(B, D)`` (not L2-normalised, as in the paper).
        l2_reg: ``λ`` of the regulariser (default 0.002; 0 switches it off).
        symmetric: also average the positive→anchor direction.

    Returns:
        Scalar loss (0 when no class has two images).
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
            npair_loss_per_sample, name=name, l2_reg=l2_reg, symmetric=bool(symmetric), **kwargs
        )
