"""Pure ``keras.ops`` building blocks shared by losses, layers and mining."""

from symm_keras.ops.distances import (
    l2_normalize,
    pairwise_distances,
    pairwise_similarities,
    pairwise_squared_distances,
    safe_sqrt,
)
from symm_keras.ops.pairs import check_pk_layout, occurrence_rank, split_anchor_positive
from symm_keras.ops.labels import (
    concrete_value,
    flatten_labels,
    negative_mask,
    positive_mask,
    same_class_mask,
)
