"""Masked reductions shared by the metric-learning losses (`keras.ops` only).

Losses reduce pair matrices over *sets* of pairs given as boolean masks
(positives, negatives, semi-hard negatives, ...). Those sets can be empty
(a batch without positives, a single-class batch), so every reduction here

* ignores masked-out entries completely: their values never reach the result,
  and they receive an exact zero gradient (even if they are huge);
* returns a finite, caller-chosen ``empty_value`` where the set is empty, with a
  zero gradient (never ``±inf`` or NaN).

All functions take ``mask`` as a boolean tensor broadcastable to ``x``; ``axis``
follows the ``keras.ops`` conventions (``None`` = all axes).
"""

from keras import ops


def _as_mask(x, mask):
    if mask is None:
        return ops.ones_like(x, dtype="bool")
    mask = ops.cast(mask, "bool")
    return ops.logical_and(mask, ops.ones_like(x, dtype="bool"))


def masked_count(mask, axis=None, keepdims=False, dtype="float32"):
    """Number of ``True`` entries of ``mask`` along ``axis``, as ``dtype``."""
    return ops.sum(ops.cast(mask, dtype), axis=axis, keepdims=keepdims)


def masked_any(mask, axis=None, keepdims=False):
    """``True`` where the masked set along ``axis`` is not empty."""
    return ops.any(ops.cast(mask, "bool"), axis=axis, keepdims=keepdims)


def masked_sum(x, mask=None, axis=None, keepdims=False):
    """``Σ_{mask} x`` along ``axis``; 0 for an empty set."""
    mask = _as_mask(x, mask)
    return ops.sum(ops.where(mask, x, ops.zeros_like(x)), axis=axis, keepdims=keepdims)


def masked_mean(x, mask=None, axis=None, keepdims=False):
    """Mean of ``x`` over the masked entries: ``Σ_{mask} x / max(|mask|, 1)``.

    An empty set gives 0 with a zero gradient. With ``mask=None`` this is the
    plain mean, except that an empty tensor gives 0 instead of NaN.
    """
    mask = _as_mask(x, mask)
    total = masked_sum(x, mask, axis=axis, keepdims=keepdims)
    count = masked_count(mask, axis=axis, keepdims=keepdims, dtype=x.dtype)
    return total / ops.maximum(count, ops.ones_like(count))


def safe_mean(x, axis=None, keepdims=False):
    """``mean(x)`` that is 0 (zero gradient) for an empty tensor instead of NaN."""
    return masked_mean(x, None, axis=axis, keepdims=keepdims)


def _filled(x, mask, axis, lowest):
    """``x`` with masked-out entries replaced by a value strictly beyond every entry.

    The filler is below (``lowest=True``) or above the extreme of ``x`` along
    ``axis`` by ``1 + |extreme|``, so it never ties with a real entry and a max
    (min) over a non-empty set only ever selects real entries.
    """
    x_ = ops.stop_gradient(ops.convert_to_tensor(x))  # torch's stop_gradient needs a tensor
    if lowest:
        extreme = ops.min(x_, axis=axis, keepdims=True)
        filler = extreme - 1.0 - ops.abs(extreme)
    else:
        extreme = ops.max(x_, axis=axis, keepdims=True)
        filler = extreme + 1.0 + ops.abs(extreme)
    return ops.where(mask, x, ops.broadcast_to(filler, ops.shape(x)))


def masked_max(x, mask, axis=None, keepdims=False, empty_value=0.0):
    """``max_{mask} x`` along ``axis``; ``empty_value`` where the set is empty.

    The gradient flows only to the selected (masked) maximum.
    """
    mask = _as_mask(x, mask)
    result = ops.max(_filled(x, mask, axis, lowest=True), axis=axis, keepdims=keepdims)
    nonempty = masked_any(mask, axis=axis, keepdims=keepdims)
    return ops.where(nonempty, result, ops.cast(empty_value, result.dtype))


def masked_min(x, mask, axis=None, keepdims=False, empty_value=0.0):
    """``min_{mask} x`` along ``axis``; ``empty_value`` where the set is empty."""
    mask = _as_mask(x, mask)
    result = ops.min(_filled(x, mask, axis, lowest=False), axis=axis, keepdims=keepdims)
    nonempty = masked_any(mask, axis=axis, keepdims=keepdims)
    return ops.where(nonempty, result, ops.cast(empty_value, result.dtype))


def masked_logsumexp(x, mask, axis=None, keepdims=False, empty_value=0.0):
    """``log Σ_{mask} exp(x)`` along ``axis``, numerically stable.

    Computed as ``m + log Σ_{mask} exp(x − m)`` with ``m`` the (constant) masked
    maximum, so large inputs do not overflow. Where the set is empty the true
    value is ``−inf``; this returns the finite ``empty_value`` instead, with a
    zero gradient — callers combine it with :func:`masked_any` when an empty set
    must mean "no contribution".
    """
    x = ops.convert_to_tensor(x)  # ``numpy - tensor`` fails on torch
    mask = _as_mask(x, mask)
    shift = ops.stop_gradient(masked_max(x, mask, axis=axis, keepdims=True))
    shifted = ops.where(mask, x - shift, ops.zeros_like(x))
    terms = ops.where(mask, ops.exp(shifted), ops.zeros_like(x))
    total = ops.sum(terms, axis=axis, keepdims=keepdims)
    nonempty = masked_any(mask, axis=axis, keepdims=keepdims)
    safe_total = ops.where(nonempty, total, ops.ones_like(total))
    if not keepdims:
        shift = ops.squeeze(shift, axis=axis) if axis is not None else ops.reshape(shift, ())
    result = ops.log(safe_total) + shift
    return ops.where(nonempty, result, ops.cast(empty_value, result.dtype))


def masked_softplus_logsumexp(x, mask, axis=None, keepdims=False):
    """``log(1 + Σ_{mask} exp(x))`` along ``axis``; exactly 0 for an empty set.

    The smooth hinge of the N-pair / lifted-structure family: the implicit
    extra term ``exp(0) = 1`` makes the value finite and ≥ 0 for any mask.
    """
    mask = _as_mask(x, mask)
    lse = masked_logsumexp(x, mask, axis=axis, keepdims=keepdims, empty_value=0.0)
    nonempty = masked_any(mask, axis=axis, keepdims=keepdims)
    value = ops.softplus(lse)
    return ops.where(nonempty, value, ops.zeros_like(value))


def per_sample_values(row_totals, count):
    """Per-sample losses ``B · row_totals / max(count, 1)`` whose mean is the loss.

    A loss ``L = (Σ of its terms) / count`` (``count``: its normaliser, e.g.
    the number of positive pairs) hands each term to the batch rows it
    belongs to (``row_totals``, shape ``(B,)``, summing to the terms' sum).
    The mean of the result is ``L``; Keras's ``sample_weight`` then weights
    each row's terms and ``reduction="sum"`` gives ``B · L``.
    """
    rows = ops.cast(ops.shape(row_totals)[0], row_totals.dtype)
    return rows * row_totals / ops.maximum(count, ops.ones_like(count))
