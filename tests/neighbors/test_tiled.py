"""The host exact kNN path (``neighbors.tiled``): BLAS tiles merged into per-query heaps, vs loop oracles.

Checked against the definitions (stable order: score descending, lower index
first; the query excluded by index) for every tile size, thread count, dtype,
metric and for self-search (symmetric tiles) and a separate gallery; the heap
merge itself against a stable sort; the numpy fallback without numba.
"""

import numpy as np
import pytest

from symm_keras.neighbors import exact, exact_knn, knn_blocks, tiled
from tests.evaluation.oracles import ranked_neighbours


def oracle_scores(queries, references, metric):
    """Float64 scores s(q, y) of the library's convention, by a double loop."""
    q = np.asarray(queries, np.float64)
    r = q if references is None else np.asarray(references, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        r = q if references is None else r / np.linalg.norm(r, axis=1, keepdims=True)
    scores = np.empty((q.shape[0], r.shape[0]))
    for i in range(q.shape[0]):
        for j in range(r.shape[0]):
            scores[i, j] = q[i] @ r[j] if metric == "cosine" else 2 * q[i] @ r[j] - r[j] @ r[j]
    return scores


def stable_top_k(scores, k, exclude_self):
    """Per row: columns sorted by (score descending, index ascending), the row's own index removed."""
    rows = []
    for i, row in enumerate(scores):
        order = sorted(range(row.size), key=lambda j: (-row[j], j))
        if exclude_self:
            order = [j for j in order if j != i]
        rows.append(order[:k])
    return np.array(rows)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("tile, threads", [(1, 1), (7, 2), (16, 3), (64, 2), (500, 1)])
def test_self_search_matches_oracle(rng, dtype, metric, tile, threads):
    x = rng.normal(size=(90, 5)).astype(dtype)
    indices, scores = tiled.tiled_knn(x, 6, metric=metric, tile=tile, num_threads=threads)
    exact = oracle_scores(x, None, metric)
    np.testing.assert_array_equal(indices, stable_top_k(exact, 6, exclude_self=True))
    np.testing.assert_allclose(scores, np.take_along_axis(exact, indices, axis=1), rtol=1e-5, atol=1e-5)
    assert indices.dtype == np.int64 and scores.dtype == np.dtype(dtype)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("tile, threads", [(1, 1), (8, 2), (1000, 2)])
def test_separate_gallery_matches_oracle(rng, metric, tile, threads):
    queries, references = rng.normal(size=(37, 4)), rng.normal(size=(53, 4))
    indices, scores = tiled.tiled_knn(queries, 9, references=references, metric=metric, tile=tile, num_threads=threads)
    exact = oracle_scores(queries, references, metric)
    np.testing.assert_array_equal(indices, stable_top_k(exact, 9, exclude_self=False))
    np.testing.assert_allclose(scores, np.take_along_axis(exact, indices, axis=1), atol=1e-9)


@pytest.mark.parametrize("tile, threads", [(1, 1), (3, 2), (8, 3), (64, 1)])
def test_exact_ties_go_to_the_lower_index_for_any_tiling(rng, tile, threads):
    # Small integer coordinates: every score is exact in float32, so ties are real.
    x = rng.integers(-1, 2, size=(60, 2)).astype("float32")
    indices, _ = tiled.tiled_knn(x, 25, metric="euclidean", tile=tile, num_threads=threads)
    expected = np.array([row[:25] for row in ranked_neighbours(x, "euclidean")])
    np.testing.assert_array_equal(indices, expected)


def test_self_excluded_by_index_among_more_duplicates_than_k():
    x = np.zeros((6, 3), np.float32)
    indices, scores = tiled.tiled_knn(x, 2, metric="euclidean", tile=2, num_threads=2)
    for q in range(6):
        assert list(indices[q]) == [j for j in range(6) if j != q][:2]
    np.testing.assert_array_equal(scores, 0.0)


def test_whole_gallery_is_a_full_ranking(rng):
    x = rng.normal(size=(20, 3)).astype("float32")
    indices, _ = tiled.tiled_knn(x, 19, metric="euclidean", tile=6, num_threads=2)
    np.testing.assert_array_equal(indices, np.array(ranked_neighbours(x, "euclidean")))


def test_thread_count_and_tile_do_not_change_the_result(rng):
    x = (rng.normal(size=(400, 8))[np.arange(400) % 40] + 0.05 * rng.normal(size=(400, 8))).astype("float32")
    reference = tiled.tiled_knn(x, 12, metric="euclidean", tile=400, num_threads=1)
    for tile, threads in [(32, 2), (100, 4), (7, 3)]:
        got = tiled.tiled_knn(x, 12, metric="euclidean", tile=tile, num_threads=threads)
        np.testing.assert_array_equal(got[0], reference[0])


@pytest.mark.parametrize("exclude_self", [False, True])
def test_heap_merge_of_one_tile_equals_a_stable_sort(rng, exclude_self):
    # Scores drawn from a few values: many ties, offered tile by tile in one pass.
    gram = rng.integers(0, 5, size=(30, 50)).astype("float32")
    bias = rng.integers(0, 3, size=50).astype("float32")
    k = 11
    heap_scores = np.full((30, k), -np.inf, np.float32)
    heap_indices = np.full((30, k), tiled._NO_INDEX, np.int64)
    for column_start in range(0, 50, 20):  # three column tiles, the last one narrower
        tile = np.ascontiguousarray(gram[:, column_start : column_start + 20])
        tiled._merge_tile_rows(tile, bias, np.arange(50), 0, column_start, exclude_self, heap_scores, heap_indices)
    tiled._sort_heaps(heap_scores, heap_indices, 0, 30)
    scores = gram - bias
    np.testing.assert_array_equal(heap_indices, stable_top_k(scores, k, exclude_self))
    np.testing.assert_array_equal(heap_scores, np.take_along_axis(scores, heap_indices, axis=1))


def test_symmetric_merge_fills_row_and_column_heaps(rng):
    # One off-diagonal tile of a self-search: rows 0..9 against columns 10..24.
    x = rng.integers(-2, 3, size=(25, 3)).astype("float32")
    bias = np.einsum("ij,ij->i", x, x)
    gram = np.ascontiguousarray(2 * x[:10] @ x[10:].T)
    heap_scores = np.full((25, 4), -np.inf, np.float32)
    heap_indices = np.full((25, 4), tiled._NO_INDEX, np.int64)
    tiled._merge_tile_both(gram, bias, np.arange(25), 0, 10, heap_scores, heap_indices)
    tiled._sort_heaps(heap_scores, heap_indices, 0, 25)
    full = 2 * x @ x.T - bias[None, :]
    rows = stable_top_k(full[:10, 10:], 4, exclude_self=False) + 10
    columns = stable_top_k(full[10:, :10], 4, exclude_self=False)
    np.testing.assert_array_equal(heap_indices[:10], rows)
    np.testing.assert_array_equal(heap_indices[10:], columns)


def test_heaps_store_ids_and_break_ties_by_id(rng):
    # Columns in a permuted order: the heap keeps the caller's ids, ties to the lower id.
    gram = rng.integers(0, 3, size=(12, 40)).astype("float32")
    bias = np.zeros(40, np.float32)
    ids = rng.permutation(40).astype(np.int64)
    heap_scores = np.full((12, 6), -np.inf, np.float32)
    heap_indices = np.full((12, 6), tiled._NO_INDEX, np.int64)
    tiled._merge_tile_rows(gram, bias, ids, 0, 0, False, heap_scores, heap_indices)
    tiled._sort_heaps(heap_scores, heap_indices, 0, 12)
    in_id_order = np.empty_like(gram)
    in_id_order[:, ids] = gram
    np.testing.assert_array_equal(heap_indices, stable_top_k(in_id_order, 6, exclude_self=False))


def test_locality_order_is_a_deterministic_permutation_that_groups_clusters(rng):
    centres = rng.normal(size=(20, 8)) * 10
    labels = rng.permutation(np.arange(2000) % 20)
    x = (centres[labels] + rng.normal(size=(2000, 8))).astype("float32")
    order = tiled.locality_order(x, cell_size=64)
    np.testing.assert_array_equal(np.sort(order), np.arange(2000))
    np.testing.assert_array_equal(order, tiled.locality_order(x, cell_size=64))
    # Consecutive points in the order share a cluster far more often than at random (1/20).
    assert np.mean(labels[order][1:] == labels[order][:-1]) > 0.5


def test_exact_knn_uses_the_tiled_path_on_cpu(rng, monkeypatch):
    calls = []
    search = tiled.tiled_knn
    monkeypatch.setattr(tiled, "tiled_knn", lambda *a, **kw: calls.append(kw) or search(*a, **kw))
    x = rng.normal(size=(30, 4))
    exact_knn(x, 3, backend="numpy", block_size=8)
    assert calls and calls[0]["tile"] == 8
    assert exact.uses_tiled_host_path("numpy", k=exact.TILED_MAX_K)
    assert not exact.uses_tiled_host_path("numpy", k=exact.TILED_MAX_K + 1)
    assert not exact.uses_tiled_host_path("keras")


def test_large_k_uses_the_numpy_blocks_with_the_same_result(rng, monkeypatch):
    x = rng.normal(size=(60, 5)).astype("float32")
    heaps = exact_knn(x, 9, metric="euclidean", backend="numpy")
    monkeypatch.setattr(exact, "TILED_MAX_K", 8)
    monkeypatch.setattr(tiled, "tiled_knn", lambda *a, **kw: pytest.fail("tiled path used for k > TILED_MAX_K"))
    blocks = exact_knn(x, 9, metric="euclidean", backend="numpy")
    np.testing.assert_array_equal(heaps[0], blocks[0])
    np.testing.assert_allclose(heaps[1], blocks[1], atol=1e-5)


def test_host_blocks_are_slices_of_the_result(rng):
    x = rng.normal(size=(23, 4))
    blocks = list(knn_blocks(x, 3, block_size=5, backend="numpy"))
    assert [(a, b) for a, b, _, _ in blocks] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    indices, _ = exact_knn(x, 3, backend="numpy")
    np.testing.assert_array_equal(np.concatenate([i for _, _, i, _ in blocks]), indices)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_numpy_fallback_without_numba_gives_the_same_lists(rng, monkeypatch, metric):
    x = rng.normal(size=(70, 6)).astype("float32")
    with_numba = exact_knn(x, 5, metric=metric, backend="numpy", block_size=16)
    monkeypatch.setattr(exact, "numba_available", lambda: False)
    assert not exact.uses_tiled_host_path("numpy")
    without = exact_knn(x, 5, metric=metric, backend="numpy", block_size=16)
    np.testing.assert_array_equal(with_numba[0], without[0])
    np.testing.assert_allclose(with_numba[1], without[1], atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [({"tile": 0}, "tile must be"), ({"num_threads": 0}, "num_threads must be")])
def test_bad_tile_or_thread_count(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiled.tiled_knn(np.eye(4, dtype="float32"), 2, **kwargs)
