"""Clustering quality from the sparse contingency table: NMI and pair-counting F1.

Both only need ``n_ij`` = number of items of class ``i`` in cluster ``j``, with
row sums ``a_i`` (class sizes) and column sums ``b_j`` (cluster sizes), kept as
its non-zero entries (at most ``n`` of them), so memory and time are
``O(n log n)`` for any number of classes and clusters — never an ``n × n``
pair matrix.

* NMI (Strehl & Ghosh 2002, arithmetic normalisation as scikit-learn's
  ``normalized_mutual_info_score``):
  ``NMI = I(Ω; C) / ((H(Ω) + H(C)) / 2)`` with
  ``I = Σ_ij (n_ij/n) log(n n_ij / (a_i b_j))`` and ``H(Ω) = −Σ_i (a_i/n) log(a_i/n)``.
* Pair-counting F1 (Song et al., "Deep Metric Learning via Lifted Structured
  Feature Embedding", CVPR 2016, §5): over all unordered item pairs,
  ``TP = Σ_ij C(n_ij, 2)``, predicted-same pairs ``Σ_j C(b_j, 2)``,
  truly-same pairs ``Σ_i C(a_i, 2)``; precision ``P = TP / Σ_j C(b_j, 2)``,
  recall ``R = TP / Σ_i C(a_i, 2)``, ``F1 = 2PR / (P + R)``.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Contingency:
    """Non-zero cells ``(class_index[c], cluster_index[c]) → counts[c]`` and the margins."""

    class_index: np.ndarray
    cluster_index: np.ndarray
    counts: np.ndarray  # n_ij of the non-zero cells
    class_sizes: np.ndarray  # a_i
    cluster_sizes: np.ndarray  # b_j
    total: int


def _codes(values, name, n=None):
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of ids, got shape {np.shape(values)}.")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} entries but labels has {n}.")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    return np.unique(array, return_inverse=True)[1].reshape(-1).astype(np.int64)


def contingency(labels, clusters):
    """Sparse contingency table of two labelings of the same items."""
    classes = _codes(labels, "labels")
    assigned = _codes(clusters, "clusters", classes.shape[0])
    num_clusters = int(assigned.max()) + 1
    cells, counts = np.unique(classes * num_clusters + assigned, return_counts=True)
    return Contingency(
        class_index=cells // num_clusters,
        cluster_index=cells % num_clusters,
        counts=counts.astype(np.int64),
        class_sizes=np.bincount(classes).astype(np.int64),
        cluster_sizes=np.bincount(assigned).astype(np.int64),
        total=int(classes.shape[0]),
    )


def _entropy(sizes, total):
    p = sizes[sizes > 0] / total
    return float(-np.sum(p * np.log(p)))


def normalized_mutual_info(labels, clusters):
    """NMI with arithmetic normalisation; equals scikit-learn's default.

    Two labelings that each put everything into one group score 1.0 (as
    scikit-learn); otherwise a zero mutual information scores 0.0.
    """
    table = contingency(labels, clusters)
    if table.class_sizes.size == table.cluster_sizes.size == 1:
        return 1.0
    n = float(table.total)
    counts = table.counts.astype(np.float64)
    a = table.class_sizes[table.class_index].astype(np.float64)
    b = table.cluster_sizes[table.cluster_index].astype(np.float64)
    mutual_info = float(np.sum(counts / n * (np.log(counts) + np.log(n) - np.log(a) - np.log(b))))
    if mutual_info <= 0.0:
        return 0.0
    normaliser = 0.5 * (_entropy(table.class_sizes, n) + _entropy(table.cluster_sizes, n))
    return float(mutual_info / max(normaliser, np.finfo(np.float64).eps))


def _pairs(sizes):
    sizes = sizes.astype(np.float64)
    return float(np.sum(sizes * (sizes - 1.0) / 2.0))


def pair_counting_f1(labels, clusters):
    """Pair-counting F1 of Song et al. 2016 from the contingency table.

    Returns 0.0 when no pair is predicted together or no pair shares a class
    (precision or recall has an empty denominator).
    """
    table = contingency(labels, clusters)
    true_positive = _pairs(table.counts)
    predicted_same = _pairs(table.cluster_sizes)
    actually_same = _pairs(table.class_sizes)
    if predicted_same == 0.0 or actually_same == 0.0 or true_positive == 0.0:
        return 0.0
    precision = true_positive / predicted_same
    recall = true_positive / actually_same
    return float(2.0 * precision * recall / (precision + recall))
