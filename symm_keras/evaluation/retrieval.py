"""Retrieval metrics with query set = reference set (the DML test protocol).

Definitions (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020,
§3.2, as in pytorch-metric-learning's ``AccuracyCalculator``). For query
``q`` of class ``c`` with neighbours ``n_1, n_2, …`` (the query itself excluded
by index), ``rel(i) = [label(n_i) = c]`` and ``R = |c| − 1`` (the other items
of its class):

* Recall@K (Song et al. 2016; PML's ``precision_at_1`` for K = 1):
  ``[Σ_{i≤K} rel(i) ≥ 1]``;
* R-precision: ``r / R`` with ``r = Σ_{i≤R} rel(i)``;
* MAP@R: ``(1/R) Σ_{i≤R} P(i) rel(i)`` with ``P(i) = (1/i) Σ_{j≤i} rel(j)``.

Each is averaged over queries. A query whose class has a single item
(``R = 0``) has no correct answer: R-precision and MAP@R are undefined and it
is skipped (as PML does); for Recall@K it is skipped too by default, or
counted as a miss with ``skip_singleton_queries=False`` (the convention of
the original Song et al. evaluation code). Skipped queries are counted.

The neighbours are ranked once, block by block (:func:`neighbour_relevance`):
each score block is reduced at once to two small arrays — the exact rank of
the first correct neighbour (all Recall@K at once, whatever the largest K) and
``rel`` over the first ``max R`` ranks — so memory stays at one score block.
"""

import dataclasses
import warnings

import numpy as np
from keras import ops

from symm_keras.evaluation.inputs import check_embeddings, check_recall_ks, encode_labels
from symm_keras.neighbors.exact import (
    block_scores,
    check_metric,
    check_positive_int,
    compiled_on_backend,
    default_block_size,
    device_operands,
    pad_to_blocks,
    resolve_backend,
    score_blocks,
    top_k,
)
from symm_keras.ops.host import to_numpy


@dataclasses.dataclass
class NeighbourRelevance:
    """Per-query summary of the ranked neighbour lists.

    Attributes:
        first_hit: ``(n,)`` 0-based rank of the first same-class neighbour
            (``n − 1``, past the end, for a single-item class).
        relevance: ``(n, r_max)`` bool, ``rel(i)`` for the first ``r_max = max R`` ranks.
        num_relevant: ``(n,)`` ``R`` per query (class size − 1).
        k: ranks covered by ``first_hit`` (the gallery size ``n − 1``).
    """

    first_hit: np.ndarray
    relevance: np.ndarray
    num_relevant: np.ndarray
    k: int


class _ClassMembers:
    """For any block of queries: the indices of their classes' members, padded.

    ``members[i, j]`` lists class ``label(i)`` in ascending index order;
    ``valid[i, j]`` is False for padding and for query ``i`` itself. Width is
    the largest class size, so a block's table is never larger than its
    score block.
    """

    def __init__(self, codes, class_sizes):
        self.order = np.argsort(codes, kind="stable")
        self.first = np.concatenate([[0], np.cumsum(class_sizes)[:-1]])
        self.sizes = class_sizes
        self.width = int(class_sizes.max())

    def table(self, query_codes, query_indices):
        slots = np.arange(self.width)[None, :]
        sizes = self.sizes[query_codes][:, None]
        members = self.order[self.first[query_codes][:, None] + np.minimum(slots, sizes - 1)]
        valid = (slots < sizes) & (members != query_indices[:, None])
        return members.astype(np.int32), valid


def _drop_self_numpy(nearest, self_column, r_max):
    is_self = nearest == self_column
    self_position = np.where(is_self.any(axis=1), is_self.argmax(axis=1), r_max + 1)
    slots = np.arange(r_max)[None, :]
    return np.take_along_axis(nearest, slots + (slots >= self_position[:, None]), axis=1)


def _relevance_numpy(scores, start, codes, r_max):
    self_column = np.arange(start, start + scores.shape[0])[:, None]
    nearest, _ = top_k(scores, r_max + 1, backend="numpy")
    nearest = _drop_self_numpy(nearest, self_column, r_max)
    return codes[nearest] == codes[self_column]


def _device_relevance_block(queries, start, references_t, bias, codes, order, first, sizes, block_size, r_max, width):
    """``(rel, first_hit)`` of one block of queries, the query excluded by index (compiled; see
    :func:`neighbour_relevance`). The best same-class item ``p*`` (lowest index among equals) is
    found among the query's class members, listed as in :class:`_ClassMembers`."""
    _, scores = block_scores(queries, start, references_t, bias, block_size)  # the query's own column at −inf
    n = scores.shape[1]
    query_index = ops.expand_dims(ops.arange(block_size, dtype="int32") + start, 1)
    columns = ops.expand_dims(ops.arange(n, dtype="int32"), 0)
    query_codes = ops.take(codes, ops.minimum(query_index, n - 1), axis=0)  # (b, 1); padded rows clamped
    slots = ops.expand_dims(ops.arange(width, dtype="int32"), 0)
    class_sizes = ops.take(sizes, query_codes, axis=0)
    members = ops.take(order, ops.take(first, query_codes, axis=0) + ops.minimum(slots, class_sizes - 1), axis=0)
    valid = ops.logical_and(slots < class_sizes, members != query_index)
    member_scores = ops.where(valid, ops.take_along_axis(scores, members, axis=1), float("-inf"))
    best = ops.max(member_scores, axis=1, keepdims=True)
    best_column = ops.min(ops.where(ops.logical_and(valid, member_scores == best), members, n), axis=1, keepdims=True)
    # Singletons (best = −inf) also count their own −inf score: neighbour_relevance resets them to n − 1.
    ahead = ops.logical_or(scores > best, ops.logical_and(scores == best, columns < best_column))
    first_hit = ops.sum(ops.cast(ahead, "int32"), axis=1)
    if r_max == 0:
        return ops.zeros((block_size, 0), dtype="bool"), first_hit
    nearest, _ = top_k(scores, r_max)
    return ops.equal(ops.take(codes, nearest, axis=0), query_codes), first_hit


def _device_pass():
    """:func:`_device_relevance_block` compiled for the active Keras backend (eager on torch)."""
    return compiled_on_backend(_device_relevance_block, ("block_size", "r_max", "width"))


def _device_relevance(embeddings, label_codes, class_sizes, r_max, metric, block_size):
    """``(first_hit, relevance)`` on the Keras backend: one compiled call per block, one host copy at the end."""
    num_items = embeddings.shape[0]
    queries, references_t, bias = device_operands(embeddings, None, check_metric(metric))
    if block_size is None:
        block_size = default_block_size(num_items, num_items)
    block_size = check_positive_int(block_size, "block_size")
    queries = pad_to_blocks(queries, block_size)
    classes = _ClassMembers(label_codes, class_sizes)
    codes, order, first, sizes = (ops.convert_to_tensor(np.asarray(a, dtype=np.int32))
                                  for a in (label_codes, classes.order, classes.first, classes.sizes))
    relevance_block = _device_pass()
    relevance, first_hit = [], []
    for start in range(0, num_items, block_size):
        rel, hits = relevance_block(queries, ops.convert_to_tensor(start, "int32"), references_t, bias, codes,
                                    order, first, sizes, block_size=block_size, r_max=r_max, width=classes.width)
        relevance.append(rel)
        first_hit.append(hits)
    relevance = to_numpy(ops.concatenate(relevance))[:num_items].astype(bool)
    return to_numpy(ops.concatenate(first_hit))[:num_items].astype(np.int64), relevance


def _rank_counts_numpy(scores, rows, self_columns, members, valid):
    """``(gt, ge, best, best_column, scores)`` of the block rows ``rows``: the best same-class score,
    its column, and how many other items score above / at least as high (see :func:`neighbour_relevance`)."""
    if rows.shape[0] != scores.shape[0]:
        scores = scores[rows]
    positive_scores = np.where(valid, np.take_along_axis(scores, members, axis=1), -np.inf)
    best_slot = positive_scores.argmax(axis=1)
    local = np.arange(rows.shape[0])
    best = positive_scores[local, best_slot]
    best_column = members[local, best_slot]
    self_score = scores[local, self_columns]
    gt = np.count_nonzero(scores > best[:, None], axis=1) - (self_score > best)
    ge = np.count_nonzero(scores >= best[:, None], axis=1) - (self_score >= best)
    return gt, ge, best, best_column, scores


def neighbour_relevance(embeddings, label_codes, class_sizes, metric="cosine", block_size=None, backend="auto"):
    """Rank every item against all others once and reduce to a :class:`NeighbourRelevance`.

    Per block of queries, with score matrix ``S`` and the order "score
    descending, lower index first on ties", the query excluded by index:

    * ``relevance[q, :r_max]`` from one ``top_k`` with ``k = r_max = max R``;
    * ``first_hit[q]``, the exact 0-based rank of the best same-class item
      ``p*`` (the lowest index among equals), which gives Recall@K for every
      K at once: ``#{j ≠ q: S_qj > S_qp*} + #{j ≠ q, j < p*: S_qj = S_qp*}``,
      instead of a ``top_k`` with ``k = max K``.

    On the Keras backend (``backend="keras"``, or ``"auto"`` on a GPU/TPU)
    each block is one compiled call (``jax.jit`` / XLA ``tf.function``) that
    counts ``first_hit`` for every row; the results stay on the device until
    the last block (one host copy). On the host ``first_hit`` is read off
    ``relevance`` where a same-class item is among the first ``r_max``, and
    counted over the row only for the others.

    ``label_codes``/``class_sizes`` come from
    :func:`symm_keras.evaluation.inputs.encode_labels`.
    """
    backend = resolve_backend(backend)
    num_items = label_codes.shape[0]
    num_relevant = class_sizes[label_codes] - 1
    r_max = int(min(num_items - 1, num_relevant.max()))
    if backend == "keras":
        embeddings = check_embeddings(embeddings)
        first_hit, relevance = _device_relevance(embeddings, label_codes, class_sizes, r_max, metric, block_size)
        first_hit[num_relevant == 0] = num_items - 1
        return NeighbourRelevance(first_hit, relevance, num_relevant, num_items - 1)
    members = _ClassMembers(label_codes, class_sizes)
    first_hit = np.full(num_items, num_items - 1, dtype=np.int64)
    relevance = np.zeros((num_items, r_max), dtype=bool)
    blocks = score_blocks(embeddings, metric=metric, block_size=block_size, backend="numpy", mask_self=False)
    for start, stop, _, scores in blocks:
        early = np.zeros(stop - start, dtype=bool)
        if r_max:
            block_relevance = _relevance_numpy(scores, start, label_codes, r_max)
            relevance[start:stop] = block_relevance
            early = block_relevance.any(axis=1)
            first_hit[start:stop][early] = block_relevance[early].argmax(axis=1)
        rows = np.flatnonzero(~early & (num_relevant[start:stop] > 0))
        if rows.size == 0:
            continue
        table, valid = members.table(label_codes[start + rows], start + rows)
        gt, ge, best, best_column, row_scores = _rank_counts_numpy(scores, rows, start + rows, table, valid)
        targets = start + rows
        first_hit[targets] = gt
        for i in np.flatnonzero(ge - gt > 1):
            # Other items tie with the best positive: those of lower index come first.
            row = row_scores[i]
            columns = np.arange(row.shape[0])
            tied_before = (row == best[i]) & (columns < best_column[i]) & (columns != targets[i])
            first_hit[targets[i]] += int(np.count_nonzero(tied_before))
    return NeighbourRelevance(first_hit, relevance, num_relevant, num_items - 1)


def recall_at_k(relevance, recall_ks, skip_singleton_queries=True):
    """``{K: Recall@K}`` from a :class:`NeighbourRelevance` (see module docstring)."""
    queries = relevance.num_relevant > 0 if skip_singleton_queries else np.ones_like(relevance.first_hit, bool)
    if not queries.any():
        return {int(k): 0.0 for k in recall_ks}
    first_hit = relevance.first_hit[queries]
    out = {}
    for k in recall_ks:
        if k > relevance.k:
            raise ValueError(f"Recall@{k} needs k ≥ {k} neighbours, only {relevance.k} were retrieved.")
        out[int(k)] = float(np.mean(first_hit < k))
    return out


def _within_r(relevance):
    ranks = np.arange(relevance.relevance.shape[1])
    return ranks[None, :] < relevance.num_relevant[:, None]


def r_precision(relevance):
    """Mean ``r / R`` over queries with ``R ≥ 1`` (0.0 when there are none)."""
    queries = relevance.num_relevant > 0
    if not queries.any():
        return 0.0
    hits = (relevance.relevance & _within_r(relevance)).sum(axis=1)
    return float(np.mean(hits[queries] / relevance.num_relevant[queries]))


def map_at_r(relevance):
    """Mean ``(1/R) Σ_{i≤R} P(i)·rel(i)`` over queries with ``R ≥ 1`` (0.0 when none)."""
    queries = relevance.num_relevant > 0
    if not queries.any():
        return 0.0
    rel = relevance.relevance & _within_r(relevance)
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, rel.shape[1] + 1)[None, :]
    summed = (precision_at_i * rel).sum(axis=1)
    return float(np.mean(summed[queries] / relevance.num_relevant[queries]))


def retrieval_metrics(
    embeddings,
    labels,
    recall_ks=(1, 2, 4, 8),
    metric="cosine",
    skip_singleton_queries=True,
    block_size=None,
    backend="auto",
):
    """Recall@K for every K, R-precision and MAP@R from one blocked kNN pass.

    Returns:
        ``(metrics, singleton_queries)``: a flat dict ``{"recall@K": …,
        "r_precision": …, "map@r": …}`` and the number of queries whose class
        has a single item (skipped where the metric is undefined).

    Raises:
        ValueError: bad embeddings/labels, K larger than the gallery (n − 1),
            or no query with a same-class item anywhere (every metric is undefined).
    """
    embeddings = check_embeddings(embeddings)
    backend = resolve_backend(backend)
    codes, class_sizes = encode_labels(labels, embeddings.shape[0])
    if embeddings.shape[0] < 2:
        raise ValueError("retrieval needs at least 2 embeddings (a query and a gallery item).")
    ks = check_recall_ks(recall_ks, embeddings.shape[0] - 1)
    singletons = int(np.sum(class_sizes[codes] == 1))
    if singletons == embeddings.shape[0]:
        raise ValueError(
            "every class in labels has a single item: no query has a correct neighbour, "
            "so Recall@K, R-precision and MAP@R are undefined."
        )
    if singletons:
        warnings.warn(
            f"{singletons} quer{'y' if singletons == 1 else 'ies'} belong to single-item classes: "
            "skipped by R-precision and MAP@R"
            + (" and Recall@K." if skip_singleton_queries else "; counted as misses by Recall@K."),
            stacklevel=2,
        )
    relevance = neighbour_relevance(
        embeddings, codes, class_sizes, metric=metric, block_size=block_size, backend=backend
    )
    metrics = {f"recall@{k}": v for k, v in recall_at_k(relevance, ks, skip_singleton_queries).items()}
    metrics["r_precision"] = r_precision(relevance)
    metrics["map@r"] = map_at_r(relevance)
    return metrics, singletons
