"""Exact k-nearest neighbours by blocked matrix products on the active Keras backend.

For a block of query rows ``Q_b`` the squared distances to all references are
``D²_b = ‖q‖² + ‖r‖² − 2 Q_b Rᵀ`` (one matrix product, clipped at 0), and
``keras.ops.top_k`` keeps the ``k`` smallest. Only a ``block_size × N`` slice of
the distance matrix exists at any time, never the full ``N × N`` matrix. With
the query set equal to the reference set (``references=None``) each query's
own row is excluded by index, not by distance, so duplicates are still found.

This is the default neighbour source for Smart Mining: it runs on the
accelerator when there is one, and on a CPU it is as fast as faiss' exact
search at the training-set sizes of CUB, Cars196 and SOP (see
``docs/smart_mining.md``).
"""

import numpy as np
from keras import ops


def _as_matrix(x, name):
    x = ops.convert_to_tensor(x)
    if len(x.shape) != 2:
        raise ValueError(f"{name} must be an (n, dim) matrix, got shape {tuple(x.shape)}.")
    if x.dtype not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def drop_self_matches(indices, distances, k):
    """Remove each row's own index from ``k + 1`` candidates, keeping ``k``.

    By index, so exact duplicates stay; if a row's own index is not among its
    candidates (more than ``k`` duplicates), the last candidate is dropped.
    """
    n = indices.shape[0]
    keep = indices != np.arange(n)[:, None]
    keep[keep.all(axis=1), -1] = False
    cols = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    rows = np.arange(n)[:, None]
    return indices[rows, cols], distances[rows, cols]


def exact_knn(embeddings, k, references=None, block_size=1024):
    """The ``k`` nearest references of every row of ``embeddings`` (squared Euclidean).

    Args:
        embeddings: ``(N, D)`` queries (numpy array or backend tensor).
        k: number of neighbours per query.
        references: ``(M, D)`` reference set; default the queries themselves,
            in which case each query excludes itself.
        block_size: query rows per matrix product (memory is ``block_size × M``).

    Returns:
        ``(indices, squared_distances)`` as numpy arrays ``(N, k)`` int64 and
        float of the input precision, each row ascending by distance.
    """
    queries = _as_matrix(embeddings, "embeddings")
    self_search = references is None
    refs = queries if self_search else _as_matrix(references, "references")
    if queries.shape[1] != refs.shape[1]:
        raise ValueError(
            f"embeddings have dimension {queries.shape[1]} but references have {refs.shape[1]}."
        )
    if refs.dtype != queries.dtype:
        refs = ops.cast(refs, queries.dtype)
    n, m = int(queries.shape[0]), int(refs.shape[0])
    available = m - 1 if self_search else m
    k = int(k)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}] for {m} reference embeddings, got {k}.")
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}.")
    if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(queries)))):
        raise ValueError("embeddings contain NaN or inf values.")

    # One matrix product per block: score = 2 q·r − ‖r‖² = ‖q‖² − ‖q − r‖², so the
    # largest scores are the nearest references; ‖q‖² is added back on the k kept.
    ref_aug = ops.concatenate(
        [2.0 * ops.transpose(refs), -ops.sum(ops.square(refs), axis=1)[None, :]], axis=0
    )
    take = k + 1 if self_search else k
    all_idx, all_dist = [], []
    for start in range(0, n, block_size):
        block = queries[start:min(n, start + block_size)]
        ones = ops.ones((ops.shape(block)[0], 1), dtype=block.dtype)
        scores = ops.matmul(ops.concatenate([block, ones], axis=1), ref_aug)
        top, idx = ops.top_k(scores, k=take, sorted=True)
        sq_norm = ops.sum(ops.square(block), axis=1, keepdims=True)
        all_idx.append(ops.convert_to_numpy(idx))
        all_dist.append(ops.convert_to_numpy(ops.maximum(sq_norm - top, 0.0)))
    idx, dist = np.concatenate(all_idx).astype(np.int64), np.concatenate(all_dist)
    if self_search:
        idx, dist = drop_self_matches(idx, dist, k)
    return idx, dist
