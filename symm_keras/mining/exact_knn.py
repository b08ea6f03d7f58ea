"""Exact k-nearest neighbours for Smart Mining, by blocked matrix products.

The search itself lives once, in :mod:`symm_keras.evaluation.knn`: on a
GPU/TPU, ``block × N`` score slices on the active Keras backend; on a CPU,
:func:`symm_keras.evaluation.knn.tiled_knn` (BLAS tile products merged into
per-sample heaps by numba; mining searches the embeddings against themselves,
so only the tiles on and above the diagonal are computed — 0.3–0.6× the time
of faiss' exact ``IndexFlatL2`` search, see ``docs/smart_mining.md``). Never
the full ``N × N`` matrix. This module adapts it to mining's convention:
squared Euclidean distances, each query's own row excluded by index (so exact
duplicates are still found).
"""

import numpy as np

from symm_keras.evaluation.knn import exact_knn as _blocked_knn


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


def exact_knn(embeddings, k, references=None, block_size=None, backend="auto", num_threads=None):
    """The ``k`` nearest references of every row of ``embeddings`` (squared Euclidean).

    Args:
        embeddings: ``(N, D)`` queries (numpy array or backend tensor).
        k: number of neighbours per query.
        references: ``(M, D)`` reference set; default the queries themselves,
            in which case each query excludes itself.
        block_size: query rows per matrix product (memory is ``block_size × M``);
            default chosen by :func:`symm_keras.evaluation.knn.default_block_size`.
        backend: ``"auto"`` (Keras backend on a GPU/TPU, the tiled host
            search on a CPU), ``"keras"`` or ``"numpy"``.
        num_threads: worker threads of the CPU search (default: every CPU
            this process may use).

    Returns:
        ``(indices, squared_distances)`` as numpy arrays ``(N, k)`` int64 and
        float of the input precision, each row ascending by distance.
    """
    indices, distances = _blocked_knn(
        embeddings,
        k,
        references=references,
        metric="euclidean",
        block_size=block_size,
        backend=backend,
        num_threads=num_threads,
    )
    return indices, np.square(distances)
