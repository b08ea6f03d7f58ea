"""Reference implementations written straight from the definitions (numpy float64, loops).

Slow on purpose: every metric is a direct loop over queries / pairs, so the
vectorised, blocked library code is checked against the formulas themselves.
"""

import itertools
import math

import numpy as np


def ranked_neighbours(embeddings, metric):
    """Per query: the other items ordered by (distance ascending, index ascending).

    The query is excluded by its index, never by its rank.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    lists = []
    for q in range(x.shape[0]):
        if metric == "cosine":
            key = [-float(x[q] @ x[j]) for j in range(x.shape[0])]
        else:
            key = [float(np.sum((x[q] - x[j]) ** 2)) for j in range(x.shape[0])]
        others = [j for j in range(x.shape[0]) if j != q]
        lists.append(sorted(others, key=lambda j: (key[j], j)))
    return lists


def retrieval_oracle(embeddings, labels, ks, metric, skip_singletons=True):
    """Recall@K, R-precision and MAP@R (Musgrave et al. 2020, §3.2) by direct loops."""
    labels = list(np.asarray(labels).reshape(-1))
    lists = ranked_neighbours(embeddings, metric)
    recall = {k: [] for k in ks}
    r_prec, map_r = [], []
    for q, neighbours in enumerate(lists):
        rel = [1 if labels[j] == labels[q] else 0 for j in neighbours]
        big_r = labels.count(labels[q]) - 1
        if big_r == 0:
            if not skip_singletons:
                for k in ks:
                    recall[k].append(0.0)
            continue
        for k in ks:
            recall[k].append(1.0 if sum(rel[:k]) >= 1 else 0.0)
        r_prec.append(sum(rel[:big_r]) / big_r)
        total = 0.0
        for i in range(1, big_r + 1):
            precision_at_i = sum(rel[:i]) / i
            total += precision_at_i * rel[i - 1]
        map_r.append(total / big_r)
    mean = lambda values: float(np.mean(values)) if values else 0.0  # noqa: E731
    out = {f"recall@{k}": mean(recall[k]) for k in ks}
    out["r_precision"] = mean(r_prec)
    out["map@r"] = mean(map_r)
    return out


def pair_count_f1(labels, clusters):
    """Pair-counting F1 of Song et al. 2016 over every unordered pair (O(n²))."""
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        same_class = labels[i] == labels[j]
        same_cluster = clusters[i] == clusters[j]
        tp += same_class and same_cluster
        fp += (not same_class) and same_cluster
        fn += same_class and (not same_cluster)
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def nmi_oracle(labels, clusters):
    """NMI = I / ((H(Ω) + H(C)) / 2) by summing over the class × cluster grid."""
    n = len(labels)
    classes, clusters_ = sorted(set(labels)), sorted(set(clusters))
    h = lambda groups, values: -sum(  # noqa: E731
        (values.count(g) / n) * math.log(values.count(g) / n) for g in groups
    )
    labels, clusters = list(labels), list(clusters)
    mi = 0.0
    for c in classes:
        for k in clusters_:
            n_ck = sum(1 for a, b in zip(labels, clusters) if a == c and b == k)
            if n_ck:
                mi += n_ck / n * math.log(n * n_ck / (labels.count(c) * clusters.count(k)))
    denominator = (h(classes, labels) + h(clusters_, clusters)) / 2
    return mi / denominator if denominator > 0 else 1.0


def lloyd_oracle(x, initial_centroids, max_iter):
    """Plain Lloyd iterations from given centroids (float64): assign, then average."""
    x = np.asarray(x, dtype=np.float64)
    centroids = np.asarray(initial_centroids, dtype=np.float64).copy()
    assign = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    for _ in range(max_iter):
        for c in range(centroids.shape[0]):
            if np.any(assign == c):
                centroids[c] = x[assign == c].mean(axis=0)
        new = np.argmin(((x[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
    return assign, centroids
