"""symm_keras.mining: Prim-tree positive pairs (DAMLRRM), exact and FANNG
neighbour lists and Algorithm 1 triplet selection (Smart Mining)."""

from symm_keras.mining.exact_knn import exact_knn
from symm_keras.mining.fanng import FanngGraph, build_fanng, fanng_neighbours, fanng_search
from symm_keras.mining.neighbours import neighbour_lists
from symm_keras.mining.prim_mst import (
    prim_minimum_spanning_forest,
    prim_positive_pairs,
    tree_pair_mask,
)
from symm_keras.mining.triplet_selection import epoch_triplets, random_triplets, smart_triplets
