"""Retrieval and clustering evaluation: Recall@K, R-precision, MAP@R, NMI, F1.

``evaluate_embeddings(embeddings, labels, recall_ks=STANDARD_RECALL_KS["cub"])``
is the one entry point; it runs the exact kNN of :mod:`symm_keras.neighbors`
once and k-means once.
Definitions and measured figures: ``docs/evaluation.md``.
"""

from symm_keras.evaluation.clustering import contingency, normalized_mutual_info, pair_counting_f1
from symm_keras.evaluation.evaluator import STANDARD_RECALL_KS, EvaluationResult, evaluate_embeddings
from symm_keras.evaluation.kmeans import KMEANS_IMPLEMENTATIONS, KMeansResult, faiss_available, kmeans
from symm_keras.evaluation.retrieval import (
    NeighbourRelevance,
    map_at_r,
    neighbour_relevance,
    r_precision,
    recall_at_k,
    retrieval_metrics,
)

__all__ = [
    "STANDARD_RECALL_KS",
    "EvaluationResult",
    "KMEANS_IMPLEMENTATIONS",
    "KMeansResult",
    "NeighbourRelevance",
    "contingency",
    "evaluate_embeddings",
    "faiss_available",
    "kmeans",
    "map_at_r",
    "neighbour_relevance",
    "normalized_mutual_info",
    "pair_counting_f1",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
]
