"""Validation of the ``(embeddings, labels)`` pair every evaluator receives.

All checks run on the host before any kNN or k-means work starts, so bad input
fails with a message naming the argument instead of deep inside a library.
"""

import numpy as np

from symm_keras.neighbors.exact import check_embeddings  # noqa: F401 - part of this module's checks
from symm_keras.neighbors.exact import check_metric as _check_metric

METRICS = ("cosine", "euclidean")


def check_metric(metric):
    """Return ``metric`` lower-cased after checking it is ``"cosine"`` or ``"euclidean"``."""
    return _check_metric(metric, METRICS)


def encode_labels(labels, num_items, name="labels"):
    """Map class labels of any hashable numpy dtype to contiguous int32 codes.

    Returns:
        ``(codes, class_sizes)``: ``codes[i]`` in ``[0, num_classes)`` and
        ``class_sizes[c]`` the number of items of class ``c``.

    Raises:
        ValueError: labels are not one per embedding (shape ``(n,)`` or ``(n, 1)``).
    """
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must hold one class label per embedding, shape (n,) or (n, 1); got {np.shape(labels)}.")
    if array.shape[0] != num_items:
        raise ValueError(f"{name} has {array.shape[0]} entries but there are {num_items} embeddings.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.all(array == np.round(array)):
            raise ValueError(f"{name} must be integer class ids (or strings); got non-integer floats.")
    _, codes, class_sizes = np.unique(array, return_inverse=True, return_counts=True)
    return codes.reshape(-1).astype(np.int32), class_sizes.astype(np.int64)


def check_recall_ks(recall_ks, gallery_size):
    """Return the sorted unique positive ints of ``recall_ks``; K must be ≤ ``gallery_size``.

    The gallery of a query is every other item (the query itself is excluded),
    so ``gallery_size = n − 1``.
    """
    if isinstance(recall_ks, (int, np.integer)):
        recall_ks = (recall_ks,)
    ks = []
    for k in recall_ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"recall_ks must be positive integers, got {tuple(recall_ks)!r}.")
        ks.append(int(k))
    ks = sorted(set(ks))
    if ks and ks[-1] > gallery_size:
        raise ValueError(
            f"Recall@{ks[-1]} asks for more neighbours than the gallery holds: each query is "
            f"compared with the other {gallery_size} item(s) (query excluded). Use K ≤ {gallery_size}."
        )
    return tuple(ks)
