"""Hardest-pair pooling over original + synthetic points (Gu & Ko, AAAI 2020, §3.2).

A P×2 batch gives, per class ``i``, four points (paper Fig. 3): the anchor
``a_i``, the positive ``p_i`` and their mirror images ``a'_i`` (``a_i`` about
``p_i``) and ``p'_i`` (``p_i`` about ``a_i``). They are stacked as four *point
sets* in this order::

    set 0 = A (original)   set 1 = P (original)
    set 2 = A' (synthetic) set 3 = P' (synthetic)

and every similarity needed by every Symm loss is the Gram tensor
``G[s, i, t, k] = z_{s,i} · z_{t,k}`` of shape ``(4, N, 4, N)``. Two ways to
get it, both with ONE matrix product:

* :func:`stacked_gram` — the stacked ``(4N, D)`` points times themselves
  (any four point sets);
* :func:`synthesis_gram` — the losses' path: the synthetic points are linear
  combinations of ``a_i`` and ``p_i`` (:func:`symm_keras.ops.synthesis.mirror_coefficients`),
  so ``G`` follows from the ``(2N, D)`` product of the originals alone plus
  ``O(N²)`` elementwise work. For a P×2 batch that is the same matrix product
  as the baseline triplet / lifted losses' pairwise distances (and 4× the
  N-pair baseline's ``A Pᵀ``), instead of 16× with materialised points.

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

import collections

from keras import ops

from symm_keras.ops.distances import safe_sqrt
from symm_keras.ops.host import lower_index_top_k
from symm_keras.ops.pairs import pair_indices, take_pairs
from symm_keras.ops.synthesis import mirror_coefficients

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


def stacked_gram(point_sets, sets=4):
    """``G[s, i, t, k] = z_{s,i} · z_{t,k}`` from one ``(sN, D) × (D, sN)`` product."""
    n, dim = ops.shape(point_sets)[1], ops.shape(point_sets)[2]
    flat = ops.reshape(point_sets, (-1, dim))
    gram = ops.matmul(flat, ops.transpose(flat))
    return ops.reshape(gram, (sets, n, sets, n))


def synthesis_gram(anchors, positives, **synthesis_kwargs):
    """The Gram tensor of ``A, P, A', P'`` from one ``(2N, D) × (D, 2N)`` product.

    ``a'_i`` (``a_i`` mirrored about ``p_i``) and ``p'_i`` are never built:
    with ``z_{s,i} = W[s,i,0] a_i + W[s,i,1] p_i``,
    ``G[s,i,t,k] = Σ_{u,v} W[s,i,u] W[t,k,v] B[u,i,v,k]`` where ``B`` is the
    Gram tensor of ``[A; P]``. Equal (to rounding) to
    ``stacked_gram(stack_point_sets(a, p, *symmetric_pair_synthesis(a, p)))``.
    """
    base = stacked_gram(ops.stack([anchors, positives], axis=0), sets=2)  # (2, N, 2, N)
    n = ops.shape(base)[1]
    flat = ops.reshape(base, (2 * n, 2 * n))
    diag = ops.reshape(ops.diagonal(flat), (2, n))
    aa, pp = diag[0], diag[1]
    ap = ops.diagonal(ops.reshape(base[0, :, 1, :], (n, n)))
    ca_a, ca_p = mirror_coefficients(aa, ap, pp, **synthesis_kwargs)  # a' = ca_a a + ca_p p
    cp_p, cp_a = mirror_coefficients(pp, ap, aa, **synthesis_kwargs)  # p' = cp_a a + cp_p p
    one, zero = ops.ones_like(aa), ops.zeros_like(aa)
    weights = ops.stack(  # (4, N, 2): coefficients on (a_i, p_i) of each set
        [
            ops.stack([one, zero], axis=-1),
            ops.stack([zero, one], axis=-1),
            ops.stack([ca_a, ca_p], axis=-1),
            ops.stack([cp_a, cp_p], axis=-1),
        ],
        axis=0,
    )
    # left[s, i, v, k] = Σ_u W[s, i, u] B[u, i, v, k]
    b_iuvk = ops.transpose(base, (1, 0, 2, 3))  # (N, 2, 2, N)
    left = ops.sum(weights[:, :, :, None, None] * b_iuvk[None], axis=2)  # (4, N, 2, N)
    # G[s, i, t, k] = Σ_v left[s, i, v, k] W[t, k, v]
    w_tvk = ops.transpose(weights, (0, 2, 1))  # (4, 2, N)
    return ops.sum(left[:, :, None, :, :] * w_tvk[None, None], axis=3)


def gram_to_metric(gram, metric):
    """Turn the Gram tensor into similarities or (squared) Euclidean distances."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    if metric == "similarity":
        return gram
    n = ops.shape(gram)[1]
    sq = ops.reshape(ops.diagonal(ops.reshape(gram, (4 * n, 4 * n))), (4, n))  # ‖z_{s,i}‖²
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
    ``ops.max`` does on every backend); the selection takes the lower index
    among equal candidates on every backend.
    """
    if hardest not in ("max", "min"):
        raise ValueError(f"hardest must be 'max' or 'min', got {hardest!r}.")
    check_top_k(top_k, limit=candidates.shape[-1] or top_k)
    sign = 1.0 if hardest == "max" else -1.0
    if top_k == 1:
        values = ops.max(candidates, axis=-1) if hardest == "max" else ops.min(candidates, axis=-1)
        selection = ops.argmax(sign * ops.stop_gradient(candidates), axis=-1)
        return values, ops.cast(selection, "int32")
    values, selection = lower_index_top_k(sign * candidates, top_k)  # ties: the lower index first
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


def pool_gram(gram, metric="similarity", pairs="paper", top_k=1):
    """Hardest negative pair of every class pair from the Gram tensor ``(4, N, 4, N)``.

    Same arguments and results as :func:`hardest_pair_pooling`.
    """
    set_pairs = set_pairs_for(pairs)
    candidates = gather_set_pairs(gram_to_metric(gram, metric), set_pairs)
    hardest = "max" if metric == "similarity" else "min"
    return pool_hardest(candidates, hardest=hardest, top_k=top_k)


def hardest_pair_pooling(point_sets, metric="similarity", pairs="paper", top_k=1):
    """Hardest negative pair of every class pair of four point sets, one matrix product.

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
    return pool_gram(stacked_gram(point_sets), metric=metric, pairs=pairs, top_k=top_k)


def synthetic_selection_counts(selection, pairs="paper", count="both"):
    """Number of synthetic points in each selected pair (same shape as ``selection``)."""
    table = ops.convert_to_tensor(synthetic_counts(set_pairs_for(pairs), count), dtype="int32")
    return ops.take(table, selection)


SymmBatch = collections.namedtuple("SymmBatch", "gram anchors positives pair_labels pair_valid pairs")


def symm_pk_batch(labels, embeddings, **synthesis_kwargs):
    """Pair a batch by label and return its :class:`SymmBatch`.

    ``gram`` is :func:`synthesis_gram` of the anchors and positives; ``pairs``
    the :class:`symm_keras.ops.pairs.PairIndex` (any layout: one pair per class
    seen at least twice; ``pair_valid`` False for padding slots, see
    :func:`symm_keras.ops.synthesis.synthesize_pk_batch`).
    """
    pairs = pair_indices(labels)
    anchors, positives = take_pairs(embeddings, pairs)
    gram = synthesis_gram(anchors, positives, **synthesis_kwargs)
    return SymmBatch(gram, anchors, positives, pairs.labels, pairs.valid, pairs)
