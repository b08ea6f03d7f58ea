"""Hardest-pair pooling over original + synthetic points (Gu & Ko, AAAI 2020, §3.2).

A P×2 batch gives, per class ``i``, four points (paper Fig. 3): the anchor
``a_i``, the positive ``p_i`` and their mirror images ``a'_i`` (``a_i`` about
``p_i``) and ``p'_i`` (``p_i`` about ``a_i``). They are stacked as four *point
sets* in this order::

    set 0 = A (original)   set 1 = P (original)
    set 2 = A' (synthetic) set 3 = P' (synthetic)

and ONE matrix product of the stacked ``(4N, D)`` points with themselves gives
every similarity needed by every Symm loss, viewed as the Gram tensor
``G[s, i, t, k] = z_{s,i} · z_{t,k}`` of shape ``(4, N, 4, N)``.

Pooling then reduces, for each class pair ``(i, k)``, over a list of *set
pairs* ``(s, t)`` — point ``z_{s,i}`` of class ``i`` against ``z_{t,k}`` of class
``k``:

* ``pairs="paper"``: all 16 set pairs, the 16 negative pairs of §3.2 (eq. 4,
  6, 8);
* ``pairs="official"``: the 6 unordered combinations of ``[A, P, P', A']`` used
  by the released code (``itertools.combinations`` of ``[anchor, positive,
  sym1, sym2]`` with ``sym1`` the positive mirrored about the anchor), each
  read as ``X · Yᵀ``.

The hardest pair has the largest similarity or the smallest distance. With
``top_k = k > 1`` the ``k`` hardest pairs of each class pair are returned,
hardest first (paper Fig. 5 compares such "top-k hardest" settings; the losses
use each of them as a separate negative term, see their docstrings).
"""

import itertools

from keras import ops

from symm_keras.ops.distances import safe_sqrt

SET_NAMES = ("anchor", "positive", "anchor_synthetic", "positive_synthetic")
SET_IS_SYNTHETIC = (False, False, True, True)
PAPER_PAIRS = tuple(itertools.product(range(4), range(4)))
# Released code: combinations of [anchor, positive, sym1 = P', sym2 = A'].
OFFICIAL_PAIRS = tuple(itertools.combinations((0, 1, 3, 2), 2))
PAIR_MODES = {"paper": PAPER_PAIRS, "official": OFFICIAL_PAIRS}
METRICS = ("similarity", "squared_euclidean", "euclidean")


def set_pairs_for(pairs):
    """The ``(s, t)`` set pairs of ``pairs="paper"`` or ``"official"``."""
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {tuple(PAIR_MODES)}, got {pairs!r}.")
    return PAIR_MODES[pairs]


def stack_point_sets(anchors, positives, anchors_synthetic, positives_synthetic):
    """``(4, N, D)`` tensor of the four point sets in the module's set order."""
    return ops.stack([anchors, positives, anchors_synthetic, positives_synthetic], axis=0)


def stacked_gram(point_sets):
    """``G[s, i, t, k] = z_{s,i} · z_{t,k}`` from one ``(4N, D) × (D, 4N)`` product."""
    n, dim = ops.shape(point_sets)[1], ops.shape(point_sets)[2]
    flat = ops.reshape(point_sets, (-1, dim))
    gram = ops.matmul(flat, ops.transpose(flat))
    return ops.reshape(gram, (4, n, 4, n))


def gram_to_metric(gram, point_sets, metric):
    """Turn the Gram tensor into similarities or (squared) Euclidean distances."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if metric == "similarity":
        return gram
    sq = ops.sum(ops.square(point_sets), axis=-1)  # (4, N)
    d2 = sq[:, :, None, None] + sq[None, None, :, :] - 2.0 * gram
    d2 = ops.maximum(d2, 0.0)
    return d2 if metric == "squared_euclidean" else safe_sqrt(d2)


def gather_set_pairs(scores, set_pairs):
    """``(N, N, len(set_pairs))`` candidates ``scores[s, i, t, k]`` for each ``(s, t)``."""
    n = ops.shape(scores)[1]
    by_class_pair = ops.reshape(ops.transpose(scores, (1, 3, 0, 2)), (n, n, 16))
    if tuple(set_pairs) == PAPER_PAIRS:
        return by_class_pair
    index = [4 * s + t for s, t in set_pairs]
    return ops.take(by_class_pair, ops.convert_to_tensor(index, dtype="int32"), axis=-1)


def check_top_k(top_k, limit=16):
    """Raise ``ValueError`` unless ``1 ≤ top_k ≤ limit`` is an integer."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= limit:
        raise ValueError(f"top_k must be an integer in [1, {limit}], got {top_k!r}.")
    return top_k


def pool_hardest(candidates, hardest="max", top_k=1):
    """Reduce the last axis of ``candidates`` to its hardest entries.

    Returns ``(values, selection)``: with ``top_k = 1`` ``values`` drops the
    last axis and ``selection`` holds the index of the chosen candidate;
    with ``top_k > 1`` both keep a last axis of size ``top_k``, hardest first.
    ``hardest="max"`` for similarities, ``"min"`` for distances. The
    gradient flows only to the selected candidates (ties share it, as
    ``ops.max`` does on every backend).
    """
    if hardest not in ("max", "min"):
        raise ValueError(f"hardest must be 'max' or 'min', got {hardest!r}.")
    check_top_k(top_k, limit=candidates.shape[-1] or top_k)
    sign = 1.0 if hardest == "max" else -1.0
    if top_k == 1:
        values = ops.max(candidates, axis=-1) if hardest == "max" else ops.min(candidates, axis=-1)
        selection = ops.argmax(sign * ops.stop_gradient(candidates), axis=-1)
        return values, ops.cast(selection, "int32")
    values, selection = ops.top_k(sign * candidates, k=top_k, sorted=True)
    return sign * values, ops.cast(selection, "int32")


def synthetic_counts(set_pairs, count="both"):
    """Synthetic points among each set pair: ``count="both"`` (0–2) or ``"negative"`` (0–1).

    ``"negative"`` counts only the point of the second class ``k`` (the
    negative class seen from class ``i``).
    """
    if count not in ("both", "negative"):
        raise ValueError(f"count must be 'both' or 'negative', got {count!r}.")
    if count == "both":
        return [int(SET_IS_SYNTHETIC[s]) + int(SET_IS_SYNTHETIC[t]) for s, t in set_pairs]
    return [int(SET_IS_SYNTHETIC[t]) for s, t in set_pairs]


def hardest_pair_pooling(point_sets, metric="similarity", pairs="paper", top_k=1):
    """Hardest negative pair of every class pair, from one matrix product.

    Args:
        point_sets: ``(4, N, D)`` from :func:`stack_point_sets`.
        metric: ``"similarity"`` (max-pooled dot products, eq. 8),
            ``"squared_euclidean"`` (min-pooled, eq. 4) or ``"euclidean"``
            (min-pooled, eq. 6).
        pairs: ``"paper"`` (16 set pairs) or ``"official"`` (6 combinations).
        top_k: number of hardest pairs kept per class pair.

    Returns:
        ``(pooled, selection)``: ``pooled[i, k]`` is the hardest value between
        classes ``i`` and ``k`` (shape ``(N, N)``, or ``(N, N, top_k)``);
        ``selection`` indexes the chosen pair in ``set_pairs_for(pairs)``.
        The diagonal ``i = k`` pools same-class pairs and is not a negative.
    """
    set_pairs = set_pairs_for(pairs)
    scores = gram_to_metric(stacked_gram(point_sets), point_sets, metric)
    candidates = gather_set_pairs(scores, set_pairs)
    hardest = "max" if metric == "similarity" else "min"
    return pool_hardest(candidates, hardest=hardest, top_k=top_k)


def synthetic_selection_counts(selection, pairs="paper", count="both"):
    """Number of synthetic points in each selected pair (same shape as ``selection``)."""
    table = ops.convert_to_tensor(synthetic_counts(set_pairs_for(pairs), count), dtype="int32")
    return ops.take(table, selection)
