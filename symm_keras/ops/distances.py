"""Pairwise distances and similarities with safe gradients (`keras.ops` only).

Every metric-learning loss in the package starts from one of these matrices:

* ``pairwise_similarities(x, y) = x yᵀ`` (dot product; cosine when rows are unit);
* ``pairwise_squared_distances(x, y) = ‖x‖² + ‖y‖² − 2 x yᵀ`` clipped at 0;
* ``pairwise_distances = sqrt(pairwise_squared_distances)`` with a gradient that
  is 0 (not NaN) where two points coincide.
"""

from keras import ops


def pairwise_similarities(x, y=None):
    """Dot-product similarity matrix ``S[i, j] = x_i · y_j``; ``y`` defaults to ``x``."""
    y = x if y is None else y
    return ops.matmul(x, ops.transpose(y))


def pairwise_squared_distances(x, y=None):
    """Squared Euclidean distances ``D²[i, j] = ‖x_i − y_j‖²`` from one matrix product.

    Rounding can make the expansion slightly negative; it is clipped at 0. When
    ``y`` is omitted the diagonal is set to exactly 0.
    """
    self_distances = y is None
    y = x if y is None else y
    x_sq = ops.sum(ops.square(x), axis=-1, keepdims=True)
    y_sq = ops.sum(ops.square(y), axis=-1, keepdims=True)
    d2 = x_sq - 2.0 * ops.matmul(x, ops.transpose(y)) + ops.transpose(y_sq)
    d2 = ops.maximum(d2, 0.0)
    if self_distances:
        n = ops.shape(x)[0]
        d2 = d2 * (1.0 - ops.eye(n, dtype=d2.dtype))
    return d2


def safe_sqrt(x):
    """``sqrt(x)`` for ``x ≥ 0`` whose gradient at 0 is 0 instead of inf/NaN."""
    positive = ops.greater(x, 0.0)
    safe_x = ops.where(positive, x, ops.ones_like(x))
    return ops.where(positive, ops.sqrt(safe_x), ops.zeros_like(x))


def pairwise_distances(x, y=None):
    """Euclidean distances ``D[i, j] = ‖x_i − y_j‖`` (zero-safe gradient)."""
    return safe_sqrt(pairwise_squared_distances(x, y))


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """``x / max(‖x‖, ε)``: unit rows, zero vectors stay zero with finite gradient."""
    x = ops.convert_to_tensor(x)  # ``numpy * tensor`` fails on torch
    norm_sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(norm_sq, epsilon * epsilon))
