"""symm_keras.mining: Prim-tree positive pairs (DAMLRRM) and Algorithm 1 triplet
selection (Smart Mining). Neighbour lists come from :mod:`symm_keras.neighbors`.

The triplet selection is compiled with numba; its names load
:mod:`symm_keras.mining.triplet_selection` on first access, so DAMLRRM's loss
(which needs only the Prim tree) imports without numba.
"""

import importlib

from symm_keras.mining.prim_mst import (
    prim_minimum_spanning_forest,
    prim_positive_pairs,
    tree_pair_mask,
)

_SELECTION_NAMES = ("EpochTriplets", "epoch_triplets", "random_triplets", "smart_triplets")

__all__ = ["prim_minimum_spanning_forest", "prim_positive_pairs", "tree_pair_mask", *_SELECTION_NAMES]


def __getattr__(name):
    if name in _SELECTION_NAMES:
        return getattr(importlib.import_module("symm_keras.mining.triplet_selection"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
