"""Pluggable neighbour lists for Smart Mining: ``neighbour_lists(embeddings, k, source=...)``.

Every source returns ``(indices, squared_distances)``: ``(N, k)`` int64 and
float32 arrays, row ``i`` holding the ``k`` nearest other samples of sample
``i`` in ascending squared Euclidean distance (the sample itself excluded by
index, so exact duplicates are still found; ``-1``/``inf`` marks a missing
entry of an approximate source).

Sources:

* ``"exact"`` (default): :func:`symm_keras.neighbors.exact.exact_knn` with
  ``metric="squared_euclidean"``: on the accelerator with the active Keras
  backend when there is one, otherwise BLAS tiles merged into heaps on the host
  (faster than faiss' exact search on a CPU).
* ``"fanng"``: the FANNG graph of the Smart Mining paper
  (:mod:`symm_keras.neighbors.fanng`, needs numba); ``budget=`` or
  ``target_recall=`` sets its search effort.
* ``"faiss"``: faiss ``IndexFlatL2`` exact search (needs faiss).
* ``"pynndescent"``: NN-descent approximate graph (needs pynndescent).
"""

import numpy as np

from symm_keras.neighbors.exact import exact_knn

SOURCES = ("exact", "fanng", "faiss", "pynndescent")


def drop_self_matches(indices, distances, k, ids=None):
    """Remove each row's own index from ``k + 1`` candidates, keeping ``k``.

    Row ``r`` belongs to sample ``ids[r]`` (default ``r``). By index, so exact
    duplicates stay; if a row's own index is not among its candidates (more
    than ``k`` duplicates), the last candidate is dropped.
    """
    n = indices.shape[0]
    ids = np.arange(n) if ids is None else np.asarray(ids)
    keep = indices != ids[:, None]
    keep[keep.all(axis=1), -1] = False
    cols = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    rows = np.arange(n)[:, None]
    return indices[rows, cols], distances[rows, cols]


def _faiss_neighbours(x, k, **options):
    try:
        import faiss
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("source='faiss' needs faiss (`pip install faiss-cpu`).") from error
    threads = options.pop("num_threads", None)
    if options:
        raise TypeError(f"unknown options for source='faiss': {sorted(options)}")
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    dist, idx = index.search(x, k + 1)
    return drop_self_matches(idx.astype(np.int64), dist.astype(np.float32), k)


def _pynndescent_neighbours(x, k, seed=0, **options):
    try:
        import pynndescent
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("source='pynndescent' needs pynndescent (`pip install pynndescent`).") from error
    index = pynndescent.NNDescent(x, n_neighbors=k + 1, metric="euclidean", random_state=seed,
                                  **options)
    idx, dist = index.neighbor_graph
    idx = idx.astype(np.int64)
    dist = np.where(idx >= 0, np.square(dist), np.inf).astype(np.float32)
    return drop_self_matches(idx, dist, k)


def neighbour_lists(embeddings, k, source="exact", seed=0, **options):
    """Each sample's ``k`` nearest other samples from the chosen source.

    Args:
        embeddings: ``(N, D)`` array or backend tensor.
        k: list length (choose it so lists hold positives and negatives).
        source: one of ``"exact"``, ``"fanng"``, ``"faiss"``, ``"pynndescent"``.
        seed: seed of the randomised sources (fanng, pynndescent).
        **options: passed to the source (e.g. ``block_size``/``backend`` for
            exact, ``budget``/``target_recall``/``target_success_rate`` for fanng).

    Returns:
        ``(indices, squared_distances)``, ``(N, k)`` int64 / float32.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown neighbour source {source!r}; choose one of {SOURCES}.")
    if source == "exact":
        idx, dist = exact_knn(embeddings, k, metric="squared_euclidean", **options)
        return idx, dist.astype(np.float32)
    x = np.ascontiguousarray(np.asarray(embeddings), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be an (n, dim) matrix, got shape {x.shape}.")
    n = x.shape[0]
    if not 1 <= int(k) < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} embeddings, got {k}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or inf values.")
    k = int(k)
    if source == "fanng":
        from symm_keras.neighbors.fanng import fanng_neighbours  # imports numba

        return fanng_neighbours(x, k, seed=seed, **options)
    if source == "faiss":
        return _faiss_neighbours(x, k, **options)
    return _pynndescent_neighbours(x, k, seed=seed, **options)
