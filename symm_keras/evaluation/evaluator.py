"""One entry point for every retrieval and clustering metric of the DML papers.

``evaluate_embeddings`` validates the input once, runs the blocked exact kNN
once (at ``k = max(max K, max R)``) for Recall@K, R-precision and MAP@R, and
k-means once (``k`` = number of classes) for NMI and F1. Definitions: see
:mod:`symm_keras.evaluation.retrieval` and :mod:`symm_keras.evaluation.clustering`
(they match pytorch-metric-learning's ``AccuracyCalculator``).
"""

import dataclasses
import time

import numpy as np

from symm_keras.evaluation.clustering import normalized_mutual_info, pair_counting_f1
from symm_keras.evaluation.inputs import check_embeddings, check_metric, check_recall_ks, encode_labels
from symm_keras.evaluation.kmeans import KMEANS_IMPLEMENTATIONS, faiss_available
from symm_keras.evaluation.kmeans import kmeans as run_kmeans
from symm_keras.neighbors.exact import resolve_backend
from symm_keras.evaluation.retrieval import retrieval_metrics

#: Recall@K cut-offs reported by the DML papers for each benchmark.
STANDARD_RECALL_KS = {"cub": (1, 2, 4, 8), "cars196": (1, 2, 4, 8), "sop": (1, 10, 100, 1000)}


@dataclasses.dataclass
class EvaluationResult:
    """Metrics of one evaluation and how they were obtained.

    Attributes:
        recall: ``{K: Recall@K}``.
        r_precision, map_at_r: retrieval metrics (None when not computed).
        nmi, f1: clustering metrics (None when ``clustering=False``).
        metric: ``"cosine"`` or ``"euclidean"``.
        num_items, num_classes: size of the evaluated set.
        singleton_queries: queries of single-item classes (skipped where undefined).
        kmeans: k-means implementation (None without clustering).
        kmeans_seed, kmeans_iterations, kmeans_inits: its seed, Lloyd
            iterations run and initialisations.
        knn_backend: ``"keras"`` (name of the Keras backend appended) or ``"numpy"``.
        retrieval_seconds, clustering_seconds: wall time of each part.
    """

    recall: dict
    r_precision: float | None
    map_at_r: float | None
    nmi: float | None
    f1: float | None
    metric: str
    num_items: int
    num_classes: int
    singleton_queries: int
    kmeans: str | None
    kmeans_seed: int | None
    kmeans_iterations: int | None
    kmeans_inits: int | None
    knn_backend: str
    retrieval_seconds: float
    clustering_seconds: float

    def as_dict(self, metadata=False):
        """Flat ``{"recall@1": …, "r_precision": …, "map@r": …, "nmi": …, "f1": …}`` of floats.

        Metrics that were not computed are left out. With ``metadata=True``
        the bookkeeping fields (k-means settings, counts, timings) are added.
        """
        out = {f"recall@{k}": float(v) for k, v in sorted(self.recall.items())}
        for key, value in (("r_precision", self.r_precision), ("map@r", self.map_at_r), ("nmi", self.nmi), ("f1", self.f1)):
            if value is not None:
                out[key] = float(value)
        if metadata:
            out.update(self.metadata())
        return out

    def metadata(self):
        """The bookkeeping fields as a flat dict."""
        return {
            "metric": self.metric,
            "num_items": self.num_items,
            "num_classes": self.num_classes,
            "singleton_queries": self.singleton_queries,
            "kmeans": self.kmeans,
            "kmeans_seed": self.kmeans_seed,
            "kmeans_iterations": self.kmeans_iterations,
            "kmeans_inits": self.kmeans_inits,
            "knn_backend": self.knn_backend,
            "retrieval_seconds": self.retrieval_seconds,
            "clustering_seconds": self.clustering_seconds,
        }


def evaluate_embeddings(
    embeddings,
    labels,
    recall_ks=(1, 2, 4, 8),
    metric="cosine",
    clustering=True,
    kmeans="sklearn",
    seed=0,
    n_init=1,
    max_iter=None,
    knn_backend="auto",
    block_size=None,
    skip_singleton_queries=True,
):
    """Recall@K, R-precision, MAP@R, NMI and F1 of a labelled embedding set.

    Every item is a query and the others are its gallery (query excluded by
    index). Cosine k-means clusters the L2-normalised embeddings, Euclidean the
    raw ones.

    Args:
        embeddings: ``(n, d)`` array (numpy or any backend tensor).
        labels: ``(n,)`` or ``(n, 1)`` class labels.
        recall_ks: cut-offs K; see :data:`STANDARD_RECALL_KS`. Each K ≤ n − 1.
        metric: ``"cosine"`` or ``"euclidean"``.
        clustering: compute NMI and F1 (k-means with k = number of classes).
        kmeans: ``"sklearn"`` (default), ``"faiss"`` or ``"keras"``.
        seed, n_init, max_iter: k-means settings (``max_iter=None`` = the
            implementation's default), recorded in the result.
        knn_backend: ``"keras"`` (active backend and its device), ``"numpy"``
            (host BLAS) or ``"auto"`` (default: keras on a GPU/TPU, numpy on CPU,
            where it is faster).
        block_size: queries per kNN block (default keeps a block near 128 MiB).
        skip_singleton_queries: leave queries of single-item classes out of
            Recall@K (PML) instead of counting them as misses.

    Returns:
        :class:`EvaluationResult`.

    Raises:
        ValueError: NaN/inf embeddings, label count ≠ embedding count, K > n − 1,
            unknown metric/kmeans/backend, or only single-item classes.
    """
    import keras

    x = check_embeddings(embeddings)
    metric = check_metric(metric)
    codes, class_sizes = encode_labels(labels, x.shape[0])
    check_recall_ks(recall_ks, x.shape[0] - 1)
    try:
        knn_backend = resolve_backend(knn_backend)
    except ValueError as error:
        raise ValueError(f"knn_{error}") from None
    if clustering and kmeans not in KMEANS_IMPLEMENTATIONS:
        raise ValueError(f"kmeans must be one of {KMEANS_IMPLEMENTATIONS}, got {kmeans!r}.")
    if clustering and kmeans == "faiss" and not faiss_available():
        raise ValueError("kmeans='faiss' needs the faiss package: pip install 'symm_keras[faiss]'.")

    started = time.perf_counter()
    retrieval, singletons = retrieval_metrics(
        x,
        codes,
        recall_ks=recall_ks,
        metric=metric,
        skip_singleton_queries=skip_singleton_queries,
        block_size=block_size,
        backend=knn_backend,
    )
    retrieval_seconds = time.perf_counter() - started

    nmi = f1 = clusters = None
    started = time.perf_counter()
    if clustering:
        points = x
        if metric == "cosine":
            points = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        clusters = run_kmeans(
            points, int(class_sizes.size), implementation=kmeans, seed=seed, n_init=n_init, max_iter=max_iter
        )
        nmi = normalized_mutual_info(codes, clusters.assignments)
        f1 = pair_counting_f1(codes, clusters.assignments)
    clustering_seconds = time.perf_counter() - started

    recall = {int(key.split("@")[1]): value for key, value in retrieval.items() if key.startswith("recall@")}
    return EvaluationResult(
        recall=recall,
        r_precision=retrieval["r_precision"],
        map_at_r=retrieval["map@r"],
        nmi=nmi,
        f1=f1,
        metric=metric,
        num_items=int(x.shape[0]),
        num_classes=int(class_sizes.size),
        singleton_queries=singletons,
        kmeans=None if clusters is None else clusters.implementation,
        kmeans_seed=None if clusters is None else clusters.seed,
        kmeans_iterations=None if clusters is None else clusters.iterations,
        kmeans_inits=None if clusters is None else clusters.inits,
        knn_backend=f"keras-{keras.backend.backend()}" if knn_backend == "keras" else knn_backend,
        retrieval_seconds=retrieval_seconds,
        clustering_seconds=clustering_seconds,
    )
