"""Anchor/positive pairing of a P×K batch, defined by labels, not positions.

The N-pair convention (Sohn 2016; TF ``npairs_loss``; the released Symm code):
in a batch holding every class exactly ``K = 2`` times, the first image of each
class in batch order is the anchor ``a_i`` and the second the positive ``p_i``.
Batches may arrive in any order — ``[0, 1, 0, 1]`` and ``[0, 0, 1, 1]`` pair
the same images.
"""

import numpy as np
from keras import ops

from symm_keras.ops.labels import concrete_value, same_class_mask


def occurrence_rank(labels):
    """``rank[i]`` = how many earlier batch entries share ``labels[i]``."""
    n = ops.shape(labels)[0]
    earlier = ops.cast(ops.triu(ops.ones((n, n)), k=1), "bool")  # earlier[j, i]: j < i
    same = same_class_mask(labels)
    return ops.sum(ops.cast(ops.logical_and(same, earlier), "int32"), axis=0)


def check_pk_layout(labels, images_per_class=2):
    """Raise ``ValueError`` unless every class occurs exactly ``images_per_class`` times.

    Only runs when the label values are concrete (see ``concrete_value``);
    under tracing the batch sampler is responsible for the layout.
    """
    values = concrete_value(labels)
    if values is None:
        return
    classes, counts = np.unique(values.reshape(-1), return_counts=True)
    wrong = {int(c): int(n) for c, n in zip(classes, counts) if n != images_per_class}
    if wrong:
        shown = dict(list(wrong.items())[:8])
        raise ValueError(
            f"expected a P×K batch with every class exactly {images_per_class} times "
            f"(e.g. 64 classes × 2 images); class counts that break it: {shown}"
            + (" ..." if len(wrong) > 8 else "")
        )


def split_anchor_positive(labels, embeddings):
    """Split a P×2 batch into aligned anchors, positives and their labels.

    Returns ``(anchors, positives, pair_labels)``, each with ``B/2`` rows, where
    ``anchors[i]`` is the first and ``positives[i]`` the second occurrence of
    class ``pair_labels[i]``; pairs follow the order in which classes first
    appear in the batch.
    """
    batch = embeddings.shape[0]
    if batch is not None and batch % 2:
        raise ValueError(f"a P×2 batch needs an even batch size, got {batch}.")
    check_pk_layout(labels, images_per_class=2)
    n = ops.shape(labels)[0]
    rank = occurrence_rank(labels)
    same = ops.cast(same_class_mask(labels), "int32")
    # Position of the first occurrence of each entry's class.
    first_position = ops.argmax(same, axis=1)
    order = ops.argsort(rank * n + ops.cast(first_position, "int32"))
    half = n // 2
    anchor_idx, positive_idx = order[:half], order[half:]
    return (
        ops.take(embeddings, anchor_idx, axis=0),
        ops.take(embeddings, positive_idx, axis=0),
        ops.take(labels, anchor_idx, axis=0),
    )
