"""Loop oracles for the Symm losses, written straight from the paper in numpy float64.

Gu & Ko, AAAI 2020: eq. 1–2 (synthesis), eq. 4 (triplet), eq. 6 (lifted, as
docs/architecture.md reads it), eq. 8 (N-pair), eq. 10 (angular); the released code's
N-pair / angular pooling ("official"). Deliberately slow and literal: Python
loops over points, pairs and classes, no vectorisation.
"""

import itertools
import math

import numpy as np


def mirror(x, axis, alpha=2.0, beta=1.0, formula="paper", force_norm=None):
    """Eq. 1–2 for one point ``x`` about ``axis``."""
    x = np.asarray(x, np.float64)
    axis = np.asarray(axis, np.float64)
    norm = math.sqrt(float(axis @ axis))
    u = axis / norm if norm > 0 else np.zeros_like(axis)
    r = (x @ u) * u  # eq. 1
    if formula == "paper":
        out = beta * (alpha * (r - x) + x)  # eq. 2
    else:
        out = beta * (alpha * r - x)
    if force_norm is not None:
        target = np.linalg.norm(x) if force_norm == "point" else np.linalg.norm(axis)
        out = out * target / max(np.linalg.norm(out), 1e-12)
    return out


def class_points(labels, x, synthesis_alpha=2.0, synthesis_beta=1.0, **synthesis):
    """{class: [a, p, a', p']} with a/p the first/second occurrence in the batch."""
    labels = np.asarray(labels).reshape(-1)
    x = np.asarray(x, np.float64)
    points = {}
    for c in dict.fromkeys(labels.tolist()):
        idx = [i for i, l in enumerate(labels.tolist()) if l == c]
        assert len(idx) == 2, "oracles are written for P×2 batches"
        a, p = x[idx[0]], x[idx[1]]
        mirror_args = dict(alpha=synthesis_alpha, beta=synthesis_beta, **synthesis)
        points[c] = [a, p, mirror(a, p, **mirror_args), mirror(p, a, **mirror_args)]
    return points


def used_rows(labels):
    """Rows a pair-based loss uses in any layout: the first two images of each
    class seen at least twice (:func:`symm_keras.ops.pair_indices`), in order."""
    labels = np.asarray(labels).reshape(-1).tolist()
    keep = [i for i, label in enumerate(labels) if labels[:i].count(label) < 2 and labels.count(label) >= 2]
    return np.asarray(keep, dtype=int)


def _sq(u, v):
    return float(np.sum((u - v) ** 2))


def _hardest(values, k, largest):
    return sorted(values, reverse=largest)[:k]


def _ordered_positive_pairs(labels):
    labels = np.asarray(labels).reshape(-1).tolist()
    return [
        (i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and labels[i] == labels[j]
    ]


def _pooled(points, ci, ck, dist, k, largest):
    values = [dist(u, v) for u in points[ci] for v in points[ck]]  # the 16 pairs
    return _hardest(values, k, largest)


def triplet(labels, x, margin=0.2, average="pairs", top_k=1, **synthesis):
    labels = np.asarray(labels).reshape(-1).tolist()
    x = np.asarray(x, np.float64)
    pts = class_points(labels, x, **synthesis)
    total, terms = 0.0, 0
    pairs = _ordered_positive_pairs(labels)
    for i, j in pairs:
        for k in range(len(labels)):
            if labels[k] == labels[i]:
                continue
            for d_neg in _pooled(pts, labels[i], labels[k], _sq, top_k, largest=False):
                total += max(_sq(x[i], x[j]) - d_neg + margin, 0.0)
                terms += 1
    count = len(pairs) if average == "pairs" else terms
    return total / max(count, 1)


def semihard_triplet(labels, x, margin=1.0, distance_metric="L2", top_k=1, **synthesis):
    labels = np.asarray(labels).reshape(-1).tolist()
    x = np.asarray(x, np.float64)
    pts = class_points(labels, x, **synthesis)
    if distance_metric == "L2":
        dist = lambda u, v: math.sqrt(_sq(u, v))  # noqa: E731
    else:
        dist = _sq
    pairs = _ordered_positive_pairs(labels)
    total = 0.0
    for i, j in pairs:
        d_ap = dist(x[i], x[j])
        negs = []
        for k in range(len(labels)):
            if labels[k] != labels[i]:
                negs += _pooled(pts, labels[i], labels[k], dist, top_k, largest=False)
        outside = [d for d in negs if d > d_ap]
        if outside:
            semi = min(outside)
        elif negs:
            semi = max(negs)
        else:
            semi = 0.0
        total += max(margin + d_ap - semi, 0.0)
    return total / max(len(pairs), 1)


def lifted_structure(labels, x, margin=1.0, top_k=1, **synthesis):
    labels = np.asarray(labels).reshape(-1).tolist()
    x = np.asarray(x, np.float64)
    pts = class_points(labels, x, **synthesis)
    dist = lambda u, v: math.sqrt(_sq(u, v))  # noqa: E731
    pairs = _ordered_positive_pairs(labels)
    total = 0.0
    for i, j in pairs:
        s = 0.0
        for k in range(len(labels)):
            if labels[k] != labels[i]:
                for d in _pooled(pts, labels[i], labels[k], dist, top_k, largest=False):
                    s += math.exp(margin - d)
        if s > 0:
            total += max(math.log(s) + dist(x[i], x[j]), 0.0) ** 2
    return total / max(len(pairs), 1)


def l2_term(pts, l2_reg):
    a = np.mean([float(v[0] @ v[0]) for v in pts.values()])
    p = np.mean([float(v[1] @ v[1]) for v in pts.values()])
    return 0.25 * l2_reg * (a + p)


def _softmax_ce(logits_row, target):
    m = max(logits_row)
    return m + math.log(sum(math.exp(v - m) for v in logits_row)) - logits_row[target]


def npair(labels, x, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    pts = class_points(labels, x, **synthesis)
    classes = list(pts)
    total = 0.0
    if pairs == "paper":
        for ci in classes:
            s_ij = float(pts[ci][0] @ pts[ci][1])
            row = [0.0]  # log(1 + Σ exp(·)) = CE with the positive logit shifted to 0
            for ck in classes:
                if ck != ci:
                    row += [v - s_ij for v in _pooled(pts, ci, ck, lambda u, v: float(u @ v), top_k, True)]
            total += _softmax_ce(row, 0)
    else:
        sets = {c: {"A": v[0], "P": v[1], "A'": v[2], "P'": v[3]} for c, v in pts.items()}
        combos = list(itertools.combinations(["A", "P", "P'", "A'"], 2))
        for i, ci in enumerate(classes):
            row = [max(float(sets[ci][X] @ sets[cj][Y]) for X, Y in combos) for cj in classes]
            total += _softmax_ce(row, i)
    return total / len(classes) + l2_term(pts, l2_reg)


def angular(labels, x, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    t = math.tan(math.radians(angle)) ** 2
    pts = class_points(labels, x, **synthesis)
    classes = list(pts)
    total = 0.0
    if pairs == "paper":
        for ci in classes:
            f_p = 2 * (1 + t) * float(pts[ci][0] @ pts[ci][1])
            row = [0.0]
            for ck in classes:
                if ck == ci:
                    continue
                cands = [
                    4 * t * float((pts[ci][p] + pts[ci][q]) @ pts[ck][r])
                    for p, q in itertools.combinations(range(4), 2)
                    for r in range(4)
                ]
                row += [v - f_p for v in _hardest(cands, top_k, True)]
            total += _softmax_ce(row, 0)
    else:
        for i, ci in enumerate(classes):
            row = []
            for cj in classes:
                best = -math.inf
                for X, Y in itertools.permutations(range(4), 2):
                    xi, yi, yj = pts[ci][X], pts[ci][Y], pts[cj][Y]
                    if cj == ci:
                        v = 2 * (1 + t) * float(xi @ yi)
                    else:
                        v = 4 * t * float((xi + yi) @ yj)
                    best = max(best, v)
                row.append(best)
            total += _softmax_ce(row, i)
    return total / len(classes) + l2_term(pts, l2_reg)


def contrastive(labels, x, margin=1.0, **synthesis):
    """Every unordered image pair once: a positive keeps its distance, a negative
    takes its class pair's pooled (min over 16) distance."""
    labels = np.asarray(labels).reshape(-1).tolist()
    x = np.asarray(x, np.float64)
    pts = class_points(labels, x, **synthesis)
    dist = lambda u, v: math.sqrt(_sq(u, v))  # noqa: E731
    total, pairs = 0.0, 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if labels[i] == labels[j]:
                total += 0.5 * _sq(x[i], x[j])
            else:
                d = _pooled(pts, labels[i], labels[j], dist, 1, largest=False)[0]
                total += 0.5 * max(margin - d, 0.0) ** 2
            pairs += 1
    return total / max(pairs, 1)


def multi_similarity(labels, x, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True,
                     **synthesis):  # fmt: skip
    """Per image: its one positive and, per other image, the pooled (max over 16)
    similarity of the two classes; mined and weighted as Wang et al. Sec. 4."""
    labels = np.asarray(labels).reshape(-1).tolist()
    x = np.asarray(x, np.float64)
    pts = class_points(labels, x, **synthesis)
    dot = lambda u, v: float(u @ v)  # noqa: E731
    total = 0.0
    for i in range(len(labels)):
        pos = [float(x[i] @ x[j]) for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg = [_pooled(pts, labels[i], labels[k], dot, 1, largest=True)[0]
               for k in range(len(labels)) if labels[k] != labels[i]]  # fmt: skip
        if mining:
            min_pos, max_neg = min(pos, default=np.inf), max(neg, default=-np.inf)
            neg = [s for s in neg if s > min_pos - epsilon]
            pos = [s for s in pos if s < max_neg + epsilon]
        a, b = positive_scale, negative_scale
        # log(1 + Σ e^z), written stably: β = 50 times a raw similarity overflows exp.
        total += np.logaddexp.reduce([0.0] + [-a * (s - base) for s in pos]) / a
        total += np.logaddexp.reduce([0.0] + [b * (s - base) for s in neg]) / b
    return total / len(labels)
