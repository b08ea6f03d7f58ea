"""symm_keras.neighbors: the k-nearest-neighbour searches evaluation and mining share.

* :mod:`~symm_keras.neighbors.exact`: exact search in blocks, on the active
  Keras backend (GPU/TPU) or on the host; :func:`exact_knn` returns cosine
  similarities, Euclidean or squared Euclidean distances (``metric=``).
* :mod:`~symm_keras.neighbors.tiled`: the host path of the exact search (BLAS
  tiles merged into heaps; numba).
* :mod:`~symm_keras.neighbors.fanng`: the FANNG graph of Smart Mining
  (numba), with a search budget or a calibrated target recall.
* :mod:`~symm_keras.neighbors.sources`: :func:`neighbour_lists`, Smart
  Mining's pluggable lists (exact, fanng, faiss, pynndescent).

numba is imported only by ``tiled`` and ``fanng``, on first use: the FANNG
names below load :mod:`~symm_keras.neighbors.fanng` when first accessed.
Guide and measured figures: ``docs/neighbors.md``.
"""

import importlib

from symm_keras.neighbors.exact import (
    METRICS,
    default_block_size,
    exact_knn,
    knn_blocks,
    resolve_backend,
    score_blocks,
    top_k,
)
from symm_keras.neighbors.sources import SOURCES, neighbour_lists

_FANNG_NAMES = ("BudgetCalibration", "FanngGraph", "build_fanng", "calibrate_search_budget", "fanng_neighbours",
                "fanng_search")

__all__ = [
    "METRICS",
    "SOURCES",
    "default_block_size",
    "exact_knn",
    "knn_blocks",
    "neighbour_lists",
    "resolve_backend",
    "score_blocks",
    "top_k",
    *_FANNG_NAMES,
]


def __getattr__(name):
    if name in _FANNG_NAMES:
        return getattr(importlib.import_module("symm_keras.neighbors.fanng"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
