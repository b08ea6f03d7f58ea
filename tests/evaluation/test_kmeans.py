"""k-means: keras.ops Lloyd vs a float64 loop, every implementation on separable blobs, metadata."""

import numpy as np
import pytest

from symm_keras.evaluation import KMEANS_IMPLEMENTATIONS, faiss_available, kmeans, normalized_mutual_info
from tests.evaluation.oracles import lloyd_oracle


def _blobs(rng, num_classes=6, per_class=10, dim=5, spread=0.05):
    labels = np.repeat(np.arange(num_classes), per_class)
    centres = np.eye(num_classes, dim) * 4 if num_classes <= dim else rng.normal(size=(num_classes, dim)) * 4
    return centres[labels] + spread * rng.normal(size=(labels.size, dim)), labels


def test_keras_lloyd_matches_float64_loop(rng):
    x, _ = _blobs(rng, num_classes=4, per_class=12, spread=1.5)
    result = kmeans(x, 4, implementation="keras", seed=3, max_iter=50, block_size=7)
    start = np.random.default_rng(3).choice(x.shape[0], 4, replace=False)
    expected_assign, expected_centroids = lloyd_oracle(x, x[start], max_iter=50)
    np.testing.assert_array_equal(result.assignments, expected_assign)
    np.testing.assert_allclose(result.centroids, expected_centroids, atol=1e-4)
    assert result.inertia == pytest.approx(((x - expected_centroids[expected_assign]) ** 2).sum(), rel=1e-4)
    assert 1 <= result.iterations <= 50


@pytest.mark.parametrize("implementation", KMEANS_IMPLEMENTATIONS)
def test_separable_blobs_are_recovered(rng, implementation):
    if implementation == "faiss" and not faiss_available():
        pytest.skip("faiss is not installed (optional extra 'faiss')")
    # Three far-apart blobs; ten seeded initialisations, the best inertia kept.
    x, labels = _blobs(rng, num_classes=3)
    result = kmeans(x, 3, implementation=implementation, seed=0, n_init=10)
    assert normalized_mutual_info(labels, result.assignments) == pytest.approx(1.0)
    assert result.implementation == implementation and result.seed == 0 and result.inits == 10
    assert result.iterations >= 1 and result.centroids.shape == (3, 5)
    assert result.assignments.shape == (30,)


def test_keras_lloyd_is_seeded(rng):
    x, _ = _blobs(rng, num_classes=5, per_class=8, spread=2.0)
    first = kmeans(x, 5, implementation="keras", seed=11)
    again = kmeans(x, 5, implementation="keras", seed=11)
    np.testing.assert_array_equal(first.assignments, again.assignments)


def test_empty_cluster_keeps_its_centroid():
    # Two coincident points and a seed that starts two centroids on them: one stays empty.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0]])
    result = kmeans(x, 3, implementation="keras", seed=0, max_iter=5)
    assert np.isfinite(result.centroids).all()
    assert len(set(result.assignments.tolist())) in (2, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_clusters": 11}, "cannot make 11 clusters from 10 embeddings"),
        ({"num_clusters": 0}, "num_clusters must be a positive integer"),
        ({"num_clusters": 2, "implementation": "torch"}, "kmeans implementation must be one of"),
        ({"num_clusters": 2, "n_init": 0}, "n_init must be a positive integer"),
        ({"num_clusters": 2, "max_iter": 0}, "max_iter must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kmeans(np.arange(20.0).reshape(10, 2), **kwargs)
