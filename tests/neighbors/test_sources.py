"""Exact kNN in squared distances (Smart Mining's convention) vs a numpy float64 oracle; the pluggable sources."""

import numpy as np
import pytest

from symm_keras import neighbors
from symm_keras.neighbors import neighbour_lists


def exact_knn(x, k, **options):
    return neighbors.exact_knn(x, k, metric="squared_euclidean", **options)


def oracle(x, k, refs=None):
    x64 = x.astype(np.float64)
    r64 = x64 if refs is None else refs.astype(np.float64)
    d = np.sum((x64[:, None] - r64[None]) ** 2, axis=-1)
    if refs is None:
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("block_size", [16, 64, 1000])
def test_matches_oracle_for_any_block_size(rng, dtype, block_size):
    x = rng.normal(size=(150, 12)).astype(dtype)
    idx, dist = exact_knn(x, 5, block_size=block_size)
    want_idx, want_dist = oracle(x, 5)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)
    assert idx.dtype == np.int64 and idx.shape == (150, 5)


def test_queries_against_separate_references(rng):
    q, r = rng.normal(size=(40, 6)), rng.normal(size=(90, 6))
    idx, dist = exact_knn(q, 4, references=r, block_size=16)
    want_idx, want_dist = oracle(q, 4, r)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)


def test_self_excluded_by_index_so_duplicates_are_found():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0]], np.float32)
    idx, dist = exact_knn(x, 2)
    for i in range(3):
        assert set(idx[i]) == {0, 1, 2} - {i}
        np.testing.assert_allclose(dist[i], 0.0, atol=1e-6)
    assert 3 not in idx[:3]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: exact_knn(np.zeros((5,)), 1), "2-D"),
        (lambda: exact_knn(np.zeros((5, 2)), 5), "larger than the gallery"),
        (lambda: exact_knn(np.zeros((5, 2)), 0), "k must be a positive integer"),
        (lambda: exact_knn(np.full((5, 2), np.nan), 2), "NaN"),
        (lambda: exact_knn(np.zeros((5, 2)), 2, references=np.zeros((5, 3))), "dimension"),
        (lambda: exact_knn(np.zeros((5, 2)), 2, block_size=0), "block_size"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "source",
    # pynndescent compiles its numba kernels on first use (minutes on 2 cores).
    ["exact", "faiss", pytest.param("pynndescent", marks=pytest.mark.slow), "fanng"],
)
def test_every_source_returns_the_same_contract(rng, source):
    if source in ("faiss", "pynndescent"):  # optional extras; numba (fanng) is a dependency
        pytest.importorskip(source)
    x = (rng.normal(size=(300, 3))[np.arange(300) % 10] * 3 + rng.normal(size=(300, 3))).astype(np.float32)
    idx, dist = neighbour_lists(x, 8, source=source, seed=0)
    want_idx, want_dist = oracle(x, 8)
    assert idx.shape == (300, 8) and idx.dtype == np.int64 and dist.dtype == np.float32
    assert not np.any(idx == np.arange(300)[:, None])
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    hits = np.mean([np.intersect1d(a, b).size / 8 for a, b in zip(idx, want_idx)])
    assert hits >= (0.999 if source in ("exact", "faiss") else 0.95)


def test_unknown_source():
    with pytest.raises(ValueError, match="unknown neighbour source"):
        neighbour_lists(np.zeros((4, 2)), 1, source="annoy")
