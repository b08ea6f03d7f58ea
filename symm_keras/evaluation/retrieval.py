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

The kNN is computed once, at ``k = max(max K, max R)``, block by block; each
block is reduced at once to two small arrays (rank of the first correct
neighbour and ``rel`` over the first ``max R`` ranks), so memory stays at one
score block whatever ``k`` is.
"""

import dataclasses
import warnings

import numpy as np
from keras import ops

from symm_keras.evaluation.inputs import check_embeddings, check_recall_ks, encode_labels
from symm_keras.evaluation.knn import knn_blocks


@dataclasses.dataclass
class NeighbourRelevance:
    """Per-query summary of the ranked neighbour lists.

    Attributes:
        first_hit: ``(n,)`` 0-based rank of the first same-class neighbour,
            ``k`` when none is among the ``k`` retrieved.
        relevance: ``(n, r_max)`` bool, ``rel(i)`` for the first ``r_max`` ranks.
        num_relevant: ``(n,)`` ``R`` per query (class size − 1).
        k: neighbours retrieved per query.
    """

    first_hit: np.ndarray
    relevance: np.ndarray
    num_relevant: np.ndarray
    k: int


def _summarise_keras(indices, query_codes, codes, k, r_max):
    match = ops.equal(ops.take(codes, indices, axis=0), ops.expand_dims(query_codes, 1))
    match_int = ops.cast(match, "int32")
    first = ops.where(ops.any(match, axis=1), ops.argmax(match_int, axis=1), k)
    return (
        np.asarray(ops.convert_to_numpy(first)),
        np.asarray(ops.convert_to_numpy(match[:, :r_max])),
    )


def _summarise_numpy(indices, query_codes, codes, k, r_max):
    match = codes[indices] == query_codes[:, None]
    first = np.where(match.any(axis=1), match.argmax(axis=1), k)
    return first, match[:, :r_max]


def neighbour_relevance(embeddings, label_codes, class_sizes, k, metric="cosine", block_size=None, backend="keras"):
    """Run the blocked kNN once and reduce it to a :class:`NeighbourRelevance`.

    ``label_codes``/``class_sizes`` come from
    :func:`symm_keras.evaluation.inputs.encode_labels`.
    """
    num_relevant = class_sizes[label_codes] - 1
    r_max = int(min(k, num_relevant.max()))
    first_hit = np.empty(label_codes.shape[0], dtype=np.int64)
    relevance = np.zeros((label_codes.shape[0], r_max), dtype=bool)
    if backend == "keras":
        codes = ops.convert_to_tensor(label_codes)
        summarise = _summarise_keras
    else:
        codes = label_codes
        summarise = _summarise_numpy
    for start, stop, indices, _ in knn_blocks(
        embeddings, k, metric=metric, block_size=block_size, backend=backend
    ):
        first_hit[start:stop], relevance[start:stop] = summarise(
            indices, codes[start:stop], codes, k, r_max
        )
    return NeighbourRelevance(first_hit, relevance, num_relevant, k)


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
    backend="keras",
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
    k = int(max(max(ks, default=1), min(class_sizes.max() - 1, embeddings.shape[0] - 1)))
    relevance = neighbour_relevance(
        embeddings, codes, class_sizes, k, metric=metric, block_size=block_size, backend=backend
    )
    metrics = {f"recall@{k}": v for k, v in recall_at_k(relevance, ks, skip_singleton_queries).items()}
    metrics["r_precision"] = r_precision(relevance)
    metrics["map@r"] = map_at_r(relevance)
    return metrics, singletons
