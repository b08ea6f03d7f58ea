"""Pure ``keras.ops`` building blocks shared by losses, layers and mining."""

from symm_keras.ops.distances import (
    l2_normalize,
    pairwise_distances,
    pairwise_similarities,
    pairwise_squared_distances,
    safe_sqrt,
)
from symm_keras.ops.dtypes import as_float
from symm_keras.ops.labels import (
    concrete_value,
    flatten_labels,
    labels_as_integers,
    negative_mask,
    positive_mask,
    same_class_mask,
)
from symm_keras.ops.pairs import (
    PairIndex,
    check_pk_layout,
    occurrence_rank,
    pair_indices,
    pairs_to_rows,
    split_anchor_positive,
)
from symm_keras.ops.pooling import hardest_pair_pooling, pool_gram, symm_pk_batch, synthesis_gram
from symm_keras.ops.reductions import (
    masked_any,
    masked_count,
    masked_logsumexp,
    masked_max,
    masked_mean,
    masked_min,
    masked_softplus_logsumexp,
    masked_sum,
    per_sample_values,
    safe_mean,
)
from symm_keras.ops.softmax_pairs import npair_cross_entropy
from symm_keras.ops.synthesis import (
    mirror_coefficients,
    mirror_points,
    symmetric_pair_synthesis,
    synthesize_pk_batch,
)
