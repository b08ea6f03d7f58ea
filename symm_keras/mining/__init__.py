"""symm_keras.mining: pair and triplet selection (Prim MST positive pairs, ...)."""

from symm_keras.mining.prim_mst import (
    prim_minimum_spanning_forest,
    prim_positive_pairs,
    tree_pair_mask,
)
