"""Synthetic data for the loss tests: clustered points, P×K batches, Recall@1.

The toy retrieval problem hides the class in a few "signal" input dimensions
and drowns it in many high-variance "nuisance" dimensions. A random linear
embedding retrieves poorly; a loss that learns to keep the signal and drop
the nuisance raises Recall@1 on classes never seen in training.
"""

import numpy as np


def pk_labels(rng, num_classes, images_per_class=2, shuffle=True):
    """Labels of a P×K batch (every class exactly ``images_per_class`` times)."""
    classes = rng.permutation(1000)[:num_classes]
    labels = np.repeat(classes, images_per_class)
    return rng.permutation(labels) if shuffle else labels


def clustered_embeddings(rng, labels, dim, spread=0.3, scale=1.0):
    """One random centre per class plus isotropic noise of std ``spread``."""
    classes = np.unique(labels)
    centres = {c: rng.normal(size=dim) for c in classes}
    x = np.stack([centres[c] + spread * rng.normal(size=dim) for c in labels])
    return scale * x


def toy_retrieval_problem(
    rng, train_classes=24, test_classes=16, per_class=8, signal_dim=4, noise_dim=12, noise=1.5
):
    """``(x_train, y_train, x_test, y_test)`` with disjoint train/test classes."""
    total = train_classes + test_classes
    centres = rng.normal(size=(total, signal_dim)) * 1.5
    labels = np.repeat(np.arange(total), per_class)
    signal = centres[labels] + 0.25 * rng.normal(size=(len(labels), signal_dim))
    nuisance = noise * rng.normal(size=(len(labels), noise_dim))
    x = np.concatenate([signal, nuisance], axis=1).astype("float32")
    train = labels < train_classes
    return x[train], labels[train], x[~train], labels[~train]


def pk_batches(rng, x, y, classes_per_batch, steps, images_per_class=2):
    """``steps`` P×K batches drawn from ``(x, y)``, concatenated batch after batch."""
    classes = np.unique(y)
    by_class = {c: np.flatnonzero(y == c) for c in classes}
    index = []
    for _ in range(steps):
        chosen = rng.choice(classes, size=classes_per_batch, replace=False)
        batch = np.concatenate(
            [rng.choice(by_class[c], size=images_per_class, replace=False) for c in chosen]
        )
        index.append(rng.permutation(batch))
    index = np.concatenate(index)
    return x[index], y[index]


def recall_at_1(embeddings, labels):
    """Share of points whose nearest other point (Euclidean) has the same label."""
    e = np.asarray(embeddings, np.float64)
    sq = np.sum(e * e, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * e @ e.T
    np.fill_diagonal(d2, np.inf)
    nearest = np.argmin(d2, axis=1)
    return float(np.mean(labels[nearest] == labels))
