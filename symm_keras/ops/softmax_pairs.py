"""Masked N-pair softmax cross-entropy (Sohn 2016; Symm eq. 7, 8, 10).

``npair_cross_entropy`` computes ``log(1 + Σ_{k∈neg(i)} exp(n_ik − s_i))`` per anchor
— the softmax cross-entropy of the logits ``[s_i, n_i·]`` against the positive
— for negatives given as a masked ``(N, M)`` matrix *or* with extra trailing
axes (several pooled negatives per class pair, paper Fig. 5), and over a
subset of anchors. It is shared by the Symm N-pair and angular losses; the
unmasked full-matrix form lives in :mod:`symm_keras.losses.npair`.
"""

from keras import ops

from symm_keras.ops.reductions import masked_softplus_logsumexp


def npair_cross_entropy(positive_logits, negative_logits, negative_mask, anchor_mask=None):
    """``log(1 + Σ_k exp(n_ik − s_i))`` per anchor, shape ``(N,)``.

    Args:
        positive_logits: ``(N,)`` logit ``s_i`` of each anchor's positive.
        negative_logits: ``(N, M)`` or ``(N, M, T)`` negative logits; a
            trailing axis holds more negative terms of the same class pair.
        negative_mask: boolean ``(N, M)`` (broadcast over trailing axes):
            which entries are real negatives.
        anchor_mask: optional ``(N,)`` boolean, the real anchors; the others
            give 0. ``None`` = all.

    An anchor without negatives gives 0 with zero gradient; the loss is the
    mean over the real anchors (``masked_mean(result, anchor_mask)``).
    """
    extra_axes = len(negative_logits.shape) - 2
    shape = (-1,) + (1,) * (extra_axes + 1)
    shifted = negative_logits - ops.reshape(positive_logits, shape)
    mask = ops.cast(negative_mask, "bool")
    for _ in range(extra_axes):
        mask = ops.expand_dims(mask, -1)
    mask = ops.logical_and(mask, ops.ones_like(shifted, dtype="bool"))
    n = ops.shape(shifted)[0]
    per_anchor = masked_softplus_logsumexp(
        ops.reshape(shifted, (n, -1)), ops.reshape(mask, (n, -1)), axis=1
    )
    if anchor_mask is None:
        return per_anchor
    return ops.where(ops.cast(anchor_mask, "bool"), per_anchor, ops.zeros_like(per_anchor))
