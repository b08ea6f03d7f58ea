"""k-means with ``k`` = number of test classes, three interchangeable implementations.

* ``"sklearn"`` (default): ``sklearn.cluster.KMeans`` (k-means++ seeding,
  Lloyd, stops at ``tol``); ``max_iter`` defaults to scikit-learn's 300.
* ``"faiss"``: ``faiss.Kmeans`` (random seeding, a fixed ``max_iter`` Lloyd
  iterations, default 20 as in pytorch-metric-learning's ``run_kmeans``; all
  points used for training). Needs the optional ``faiss-cpu`` extra.
* ``"keras"``: Lloyd's algorithm in ``keras.ops`` on the active backend's device
  (GPU/TPU when present), for accelerators: seeding with ``k`` distinct points
  drawn with ``numpy.random.default_rng(seed)``; each iteration assigns every
  point to its nearest centroid (blocked ``argmax_j 2 x·c_j − ‖c_j‖²``, never
  an ``n × k`` matrix larger than one block) and moves each centroid to the
  mean of its points (``segment_sum``); an empty cluster keeps its centroid.
  Stops when no assignment changes or after ``max_iter`` (default 20) updates.

Every result records the implementation, seed, iterations run and number of
initialisations, so a reported NMI/F1 can be reproduced.
"""

import dataclasses

import numpy as np
from keras import ops

from symm_keras.evaluation.inputs import check_embeddings
from symm_keras.ops.host import to_numpy

KMEANS_IMPLEMENTATIONS = ("sklearn", "faiss", "keras")
DEFAULT_MAX_ITER = {"sklearn": 300, "faiss": 20, "keras": 20}
_BLOCK_ELEMENTS = 1 << 25


@dataclasses.dataclass
class KMeansResult:
    """Cluster assignment plus what is needed to reproduce it."""

    assignments: np.ndarray
    centroids: np.ndarray
    inertia: float
    implementation: str
    seed: int
    iterations: int
    inits: int


def faiss_available():
    """True when the optional ``faiss`` package can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _sklearn_kmeans(x, num_clusters, seed, n_init, max_iter):
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=num_clusters, n_init=n_init, max_iter=max_iter, random_state=seed)
    assignments = model.fit_predict(x)
    return assignments, model.cluster_centers_, float(model.inertia_), int(model.n_iter_)


def _faiss_kmeans(x, num_clusters, seed, n_init, max_iter):
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    model = faiss.Kmeans(
        x.shape[1],
        num_clusters,
        niter=max_iter,
        nredo=n_init,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(1, -(-x.shape[0] // num_clusters)),
    )
    model.train(x)
    distances, assignments = model.index.search(x, 1)
    return assignments[:, 0].astype(np.int64), model.centroids, float(distances.sum()), int(max_iter)


def _assign(x, x_sq, centroids, block_size):
    """Nearest centroid of every row of ``x`` and the squared distance to it."""
    centroids_t = ops.transpose(centroids)
    centroid_sq = ops.expand_dims(ops.sum(ops.square(centroids), axis=1), 0)
    assignments, distances = [], []
    for start in range(0, x.shape[0], block_size):
        block = x[start : start + block_size]
        scores = 2.0 * ops.matmul(block, centroids_t) - centroid_sq
        assignments.append(ops.cast(ops.argmax(scores, axis=1), "int32"))
        distances.append(x_sq[start : start + block_size] - ops.max(scores, axis=1))
    return ops.concatenate(assignments), ops.maximum(ops.concatenate(distances), 0.0)


def _keras_kmeans(x, num_clusters, seed, n_init, max_iter, block_size=None):
    rng = np.random.default_rng(seed)
    data = ops.convert_to_tensor(x)
    x_sq = ops.sum(ops.square(data), axis=1)
    ones = ops.ones((x.shape[0], 1), dtype=data.dtype)
    if block_size is None:
        block_size = max(1, min(x.shape[0], _BLOCK_ELEMENTS // num_clusters))
    best = None
    for _ in range(n_init):
        centroids = ops.take(data, rng.choice(x.shape[0], num_clusters, replace=False), axis=0)
        assignments, distances = _assign(data, x_sq, centroids, block_size)
        iterations = 0
        while iterations < max_iter:
            sums = ops.segment_sum(data, assignments, num_segments=num_clusters)
            counts = ops.segment_sum(ones, assignments, num_segments=num_clusters)
            centroids = ops.where(counts > 0, sums / ops.maximum(counts, 1.0), centroids)
            iterations += 1
            new_assignments, distances = _assign(data, x_sq, centroids, block_size)
            changed = bool(to_numpy(ops.any(ops.not_equal(new_assignments, assignments))))
            assignments = new_assignments
            if not changed:
                break
        inertia = float(to_numpy(ops.sum(distances)))
        if best is None or inertia < best[2]:
            best = (
                to_numpy(assignments).astype(np.int64),
                to_numpy(centroids),
                inertia,
                iterations,
            )
    return best


def kmeans(embeddings, num_clusters, implementation="sklearn", seed=0, n_init=1, max_iter=None, block_size=None):
    """Cluster ``embeddings`` into ``num_clusters`` groups.

    Args:
        embeddings: ``(n, d)`` finite array.
        num_clusters: ``k``, at most ``n``.
        implementation: ``"sklearn"``, ``"faiss"`` or ``"keras"`` (see module docstring).
        seed: random seed of the initialisation.
        n_init: initialisations; the one with the lowest inertia is kept.
        max_iter: Lloyd iterations cap; ``None`` = the implementation's default
            (:data:`DEFAULT_MAX_ITER`).
        block_size: rows per assignment block (``"keras"`` only).

    Returns:
        :class:`KMeansResult`.
    """
    if implementation not in KMEANS_IMPLEMENTATIONS:
        raise ValueError(f"kmeans implementation must be one of {KMEANS_IMPLEMENTATIONS}, got {implementation!r}.")
    x = check_embeddings(embeddings)
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) or num_clusters < 1:
        raise ValueError(f"num_clusters must be a positive integer, got {num_clusters!r}.")
    if num_clusters > x.shape[0]:
        raise ValueError(f"cannot make {num_clusters} clusters from {x.shape[0]} embeddings.")
    for name, value in (("n_init", n_init), ("max_iter", 1 if max_iter is None else max_iter)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    max_iter = DEFAULT_MAX_ITER[implementation] if max_iter is None else int(max_iter)
    if implementation == "faiss" and not faiss_available():
        raise ValueError("kmeans='faiss' needs the faiss package: pip install 'symm_keras[faiss]'.")
    if implementation == "sklearn":
        result = _sklearn_kmeans(x, int(num_clusters), seed, int(n_init), max_iter)
    elif implementation == "faiss":
        result = _faiss_kmeans(x, int(num_clusters), seed, int(n_init), max_iter)
    else:
        result = _keras_kmeans(x, int(num_clusters), seed, int(n_init), max_iter, block_size)
    assignments, centroids, inertia, iterations = result
    return KMeansResult(
        assignments=np.asarray(assignments).astype(np.int64),
        centroids=np.asarray(centroids),
        inertia=inertia,
        implementation=implementation,
        seed=int(seed),
        iterations=int(iterations),
        inits=int(n_init),
    )
