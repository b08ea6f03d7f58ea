"""Slow numpy float64 loop oracles, written straight from the papers' equations.

Each oracle takes integer ``labels`` (B,) and embeddings ``x`` (B, D) and
loops over pairs/triplets exactly as the equation reads; nothing is shared
with the vectorised code in ``symm_keras.losses``.
"""

import math

import numpy as np


def _dist(x, i, j):
    return math.sqrt(float(np.sum((x[i] - x[j]) ** 2)))


def _dist2(x, i, j):
    return float(np.sum((x[i] - x[j]) ** 2))


def contrastive_oracle(labels, x, margin=1.0):
    """Hadsell et al. 2006 eq. 4, mean over unordered pairs i < j."""
    x = np.asarray(x, np.float64)
    total, pairs = 0.0, 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d = _dist(x, i, j)
            if labels[i] == labels[j]:
                total += 0.5 * d * d
            else:
                total += 0.5 * max(margin - d, 0.0) ** 2
            pairs += 1
    return total / pairs if pairs else 0.0


def triplet_oracle(labels, x, margin=0.2, average="pairs", squared=True):
    """Symm eq. 3: (1/|P|) Σ_{(i,j)∈P} Σ_{k: l_k≠l_i} [D²_ij − D²_ik + m]_+ (``squared=False``:
    D; ``average="nonzero"``: ÷ the triplets with a non-zero hinge)."""
    x = np.asarray(x, np.float64)
    n = len(labels)
    dist = _dist2 if squared else (lambda x, i, j: np.sqrt(_dist2(x, i, j)))
    total, positives, triplets, nonzero = 0.0, 0, 0, 0
    for i in range(n):
        for j in range(n):
            if i == j or labels[i] != labels[j]:
                continue
            positives += 1
            for k in range(n):
                if labels[k] == labels[i]:
                    continue
                triplets += 1
                term = max(dist(x, i, j) - dist(x, i, k) + margin, 0.0)
                total += term
                nonzero += term > 0
    count = {"pairs": positives, "triplets": triplets, "nonzero": nonzero}[average]
    return total / count if count else 0.0


def semihard_oracle(labels, x, margin=1.0, distance_metric="L2"):
    """FaceNet semi-hard triplet loss as TF Addons computes it (loops)."""
    x = np.asarray(x, np.float64)
    n = len(labels)

    def dist(i, j):
        if i == j:
            return 0.0
        if distance_metric == "L2":
            return _dist(x, i, j)
        if distance_metric == "squared-L2":
            return _dist2(x, i, j)
        ui = x[i] / max(np.linalg.norm(x[i]), 1e-12)
        uj = x[j] / max(np.linalg.norm(x[j]), 1e-12)
        return max(1.0 - float(ui @ uj), 0.0)

    total, positives = 0.0, 0
    for a in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            positives += 1
            d_ap = dist(a, p)
            farther = [dist(a, k) for k in negatives if dist(a, k) > d_ap]
            if farther:
                semi = min(farther)
            elif negatives:
                semi = max(dist(a, k) for k in negatives)
            else:
                semi = min(dist(a, k) for k in range(n))
            total += max(margin + d_ap - semi, 0.0)
    return total / positives if positives else 0.0


def lifted_structure_oracle(labels, x, margin=1.0):
    """Symm eq. 5 over unordered positive pairs {i, j}."""
    x = np.asarray(x, np.float64)
    n = len(labels)
    total, positives = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            if labels[i] != labels[j]:
                continue
            positives += 1
            s = 0.0
            for k in range(n):
                if labels[k] != labels[i]:
                    s += math.exp(margin - _dist(x, i, k))
            for k in range(n):
                if labels[k] != labels[j]:
                    s += math.exp(margin - _dist(x, j, k))
            if s == 0.0:
                continue  # log 0 = −inf: the hinge is 0
            total += max(math.log(s) + _dist(x, i, j), 0.0) ** 2
    return total / (2 * positives) if positives else 0.0


def anchor_positive_pairs(labels):
    """First and second occurrence of each class, in order of first appearance."""
    seen = {}
    for index, label in enumerate(labels):
        seen.setdefault(int(label), []).append(index)
    anchors = [v[0] for v in seen.values()]
    positives = [v[1] for v in seen.values()]
    return anchors, positives


def _l2_term(x, anchors, positives, l2_reg):
    a = np.mean([np.sum(x[i] ** 2) for i in anchors])
    p = np.mean([np.sum(x[i] ** 2) for i in positives])
    return 0.25 * l2_reg * (a + p)


def _softplus_sum(values):
    """log(1 + Σ exp(v)) for a list of exponents, computed stably."""
    values = np.asarray(values, np.float64)
    m = max(0.0, float(np.max(values))) if len(values) else 0.0
    return m + math.log(math.exp(-m) + float(np.sum(np.exp(values - m))))


def npair_oracle(labels, x, l2_reg=0.002, symmetric=False):
    """Symm eq. 7: (1/P) Σ_i log(1 + Σ_{j≠i} exp(a_i·p_j − a_i·p_i)) + L2 term."""
    x = np.asarray(x, np.float64)
    anchors, positives = anchor_positive_pairs(labels)
    n = len(anchors)

    def direction(first, second):
        total = 0.0
        for i in range(n):
            s_ii = float(x[first[i]] @ x[second[i]])
            total += _softplus_sum(
                [float(x[first[i]] @ x[second[j]]) - s_ii for j in range(n) if j != i]
            )
        return total / n

    loss = direction(anchors, positives)
    if symmetric:
        loss = 0.5 * (loss + direction(positives, anchors))
    return loss + _l2_term(x, anchors, positives, l2_reg)


def angular_oracle(labels, x, angle=45.0, l2_reg=0.002, with_npair=False, angular_weight=2.0):
    """Symm eq. 9 with f^p = 2(1+tan²α) a_i·p_i, f^n = 4 tan²α (a_i+p_i)·p_j."""
    x = np.asarray(x, np.float64)
    anchors, positives = anchor_positive_pairs(labels)
    n = len(anchors)
    t = math.tan(math.radians(angle)) ** 2
    angular = 0.0
    npair = 0.0
    for i in range(n):
        a, p = x[anchors[i]], x[positives[i]]
        f_p = 2.0 * (1.0 + t) * float(a @ p)
        angular += _softplus_sum(
            [4.0 * t * float((a + p) @ x[positives[j]]) - f_p for j in range(n) if j != i]
        )
        npair += _softplus_sum([float(a @ x[positives[j]]) - float(a @ p) for j in range(n) if j != i])
    loss = angular / n
    if with_npair:
        loss = npair / n + angular_weight * loss
    return loss + _l2_term(x, anchors, positives, l2_reg)


def random_batches(rng, balanced_only=False):
    """``(labels, x)`` test batches: random and clustered, several shapes.

    Balanced P×2 batches always; with ``balanced_only=False`` also K = 3, 4
    and unbalanced batches with singleton classes.
    """
    shapes = [(2, 2, 3), (5, 2, 8), (8, 2, 16)]
    if not balanced_only:
        shapes += [(3, 3, 4), (4, 4, 6)]
    batches = []
    for classes, k, dim in shapes:
        labels = rng.permutation(np.repeat(np.arange(classes) * 7 + 3, k))
        batches.append((labels, rng.normal(size=(len(labels), dim))))
        centres = rng.normal(size=(classes, dim))
        clustered = centres[np.searchsorted(np.unique(labels), labels)]
        batches.append((labels, clustered + 0.2 * rng.normal(size=clustered.shape)))
    if not balanced_only:
        labels = np.array([0, 1, 1, 2, 2, 2, 3, 4, 4])
        batches.append((labels, rng.normal(size=(len(labels), 5))))
    return batches
