"""Anchor/positive pairing of a batch, defined by labels, not positions.

The N-pair convention (Sohn 2016; TF ``npairs_loss``; the released Symm code):
in a batch holding every class exactly ``K = 2`` times, the first image of each
class in batch order is the anchor ``a_i`` and the second the positive ``p_i``.
Batches may arrive in any order — ``[0, 1, 0, 1]`` and ``[0, 0, 1, 1]`` pair
the same images.

Any other layout is defined the same way (eagerly and under ``jit``, on every
backend): each class seen at least twice gives one pair, its first and second
image; an image whose class occurs once, and the third and later images of a
class, belong to no pair (:attr:`PairIndex.valid` is ``False`` for the unused
slots). This is the pair selection of pytorch-metric-learning's
``NPairsLoss`` (one positive pair per label).
"""

import collections

import numpy as np
from keras import ops

from symm_keras.ops.labels import concrete_value, same_class_mask

#: ``anchor``/``positive``: ``(B // 2,)`` row indices; ``labels``: the pair's
#: class; ``valid``: the slot holds a real pair (False: padding, ignore).
PairIndex = collections.namedtuple("PairIndex", "anchor positive labels valid")


def occurrence_rank(labels):
    """``rank[i]`` = how many earlier batch entries share ``labels[i]``."""
    n = ops.shape(labels)[0]
    earlier = ops.cast(ops.triu(ops.ones((n, n)), k=1), "bool")  # earlier[j, i]: j < i
    same = same_class_mask(labels)
    return ops.sum(ops.cast(ops.logical_and(same, earlier), "int32"), axis=0)


def check_pk_layout(labels, images_per_class=2, batch="a P×K batch (e.g. 64 classes × 2 images)"):
    """Raise ``ValueError`` unless every class occurs exactly ``images_per_class`` times.

    Only runs when the label values are concrete (see ``concrete_value``). The
    losses do not need it (every layout is defined, see the module docstring);
    it is for callers that want to insist on an exact P×K batch. ``batch``
    names the checked rows in the error.
    """
    values = concrete_value(labels)
    if values is None:
        return
    classes, counts = np.unique(values.reshape(-1), return_counts=True)
    wrong = {int(c): int(n) for c, n in zip(classes, counts) if n != images_per_class}
    if wrong:
        shown = dict(list(wrong.items())[:8])
        raise ValueError(
            f"expected {batch} with every class exactly {images_per_class} times; "
            f"class counts that break it: {shown}"
            + (" ..." if len(wrong) > 8 else "")
        )


def pair_indices(labels):
    """:class:`PairIndex` of the first and second image of each class (module docstring).

    ``B // 2`` slots (the most pairs a batch of ``B`` can hold); valid pairs
    come first, in the order their classes first appear in the batch.
    """
    n = ops.shape(labels)[0]
    rank = occurrence_rank(labels)
    first = ops.cast(ops.argmax(ops.cast(same_class_mask(labels), "int32"), axis=1), "int32")
    is_second = ops.equal(rank, 1)
    key = ops.where(is_second, first, n + ops.arange(n, dtype="int32"))
    positive = ops.cast(ops.argsort(key), "int32")[: n // 2]
    anchor = ops.take(first, positive)
    return PairIndex(anchor, positive, ops.take(labels, anchor), ops.take(is_second, positive))


def take_pairs(embeddings, pairs):
    """``(anchors, positives)``: the rows of ``embeddings`` of each :class:`PairIndex` slot."""
    return ops.take(embeddings, pairs.anchor, axis=0), ops.take(embeddings, pairs.positive, axis=0)


def split_anchor_positive(labels, embeddings):
    """Aligned anchors and positives of a batch (pairs as in :func:`pair_indices`).

    Returns ``(anchors, positives, pair_labels, pair_valid)``, each with ``B // 2``
    rows; rows with ``pair_valid`` False are padding that every loss masks out.
    """
    pairs = pair_indices(labels)
    return take_pairs(embeddings, pairs) + (pairs.labels, pairs.valid)


def pairs_to_rows(values, pairs, num_rows):
    """``(B,)`` row totals: each valid pair's value split equally between its two rows.

    ``values`` is ``(B // 2,)``, one per :class:`PairIndex` slot; padding slots
    add nothing. The row totals sum to the sum of the valid pair values.
    """
    rows = ops.arange(num_rows, dtype="int32")
    half = ops.where(pairs.valid, 0.5 * values, ops.zeros_like(values))
    members = ops.cast(ops.equal(ops.expand_dims(pairs.anchor, 1), rows), values.dtype) + ops.cast(
        ops.equal(ops.expand_dims(pairs.positive, 1), rows), values.dtype
    )
    return ops.sum(ops.expand_dims(half, 1) * members, axis=0)
