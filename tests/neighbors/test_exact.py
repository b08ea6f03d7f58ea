"""Blocked exact kNN: brute-force agreement, ties to the lower index, self excluded by index."""

import numpy as np
import pytest

from keras import ops

from symm_keras.neighbors import default_block_size, exact_knn, knn_blocks, top_k
from tests.evaluation.oracles import ranked_neighbours

BACKENDS = ("keras", "numpy")


def stable_euclidean_neighbours(x, k):
    """The ``k`` nearest other rows by float64 squared distance, ties to the lower index (vectorised oracle)."""
    squared = np.sum((x[:, None].astype(np.float64) - x[None]) ** 2, axis=-1)  # exact for integer points
    np.fill_diagonal(squared, np.inf)
    return np.argsort(squared, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_brute_force(rng, backend, metric):
    x = rng.normal(size=(40, 6))
    indices, scores = exact_knn(x, 7, metric=metric, backend=backend, block_size=9)
    expected = np.array([row[:7] for row in ranked_neighbours(x, metric)])
    np.testing.assert_array_equal(indices, expected)
    if metric == "cosine":
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        reference = np.take_along_axis(unit @ unit.T, expected, axis=1)
    else:
        reference = np.linalg.norm(x[:, None] - x[expected], axis=-1)
    np.testing.assert_allclose(scores, reference, atol=1e-5)


@pytest.mark.parametrize(
    "backend, precision",
    [("keras", "float32"), ("numpy", "float32"), ("auto", "bfloat16"), ("auto", "tensorfloat32")],
)
def test_ties_go_to_lower_index_and_self_is_dropped_by_index(backend, precision):
    # Six identical points: every other item ties with the query (distance 0), also
    # after a reduced-precision candidate product.
    x = np.ones((6, 3), dtype="float32")
    indices, scores = exact_knn(x, 5, metric="euclidean", backend=backend, precision=precision)
    for q in range(6):
        assert list(indices[q]) == [j for j in range(6) if j != q]
    np.testing.assert_array_equal(scores, 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_grid_with_many_ties(rng, backend):
    x = rng.integers(-1, 2, size=(50, 2)).astype("float32")
    indices, _ = exact_knn(x, 20, metric="euclidean", backend=backend, block_size=8)
    expected = np.array([row[:20] for row in ranked_neighbours(x, "euclidean")])
    np.testing.assert_array_equal(indices, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_separate_reference_set(rng, backend):
    queries, references = rng.normal(size=(6, 4)), rng.normal(size=(11, 4))
    indices, distances = exact_knn(queries, 11, references=references, metric="euclidean", backend=backend)
    full = np.linalg.norm(queries[:, None] - references[None], axis=-1)
    np.testing.assert_array_equal(indices, np.argsort(full, axis=1, kind="stable"))
    np.testing.assert_allclose(distances, np.sort(full, axis=1), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k, chunk, n", [(3, 4, 50), (5, 8, 163), (1, 3, 13), (2, 64, 600)])
@pytest.mark.parametrize("levels", [6, 40])
def test_two_stage_top_k_equals_a_stable_sort(rng, backend, k, chunk, n, levels):
    # Few distinct values: ties inside and across chunks of different maxima;
    # n not a multiple of the chunk.
    scores = rng.integers(0, levels, size=(7, n)).astype("float32")
    indices, values = top_k(scores, k, backend=backend, chunk=chunk)
    indices, values = np.asarray(ops.convert_to_numpy(indices)), np.asarray(ops.convert_to_numpy(values))
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_blocks_with_a_short_last_block_and_two_stage_top_k(rng, backend):
    # 4·k·64 ≤ n: the two-stage top-k runs; 700 = 6 blocks of 112 + 28.
    x = rng.integers(-2, 3, size=(700, 3)).astype("float32")
    indices, distances = exact_knn(x, 2, metric="euclidean", backend=backend, block_size=112)
    expected = stable_euclidean_neighbours(x, 2)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(distances, np.linalg.norm(x[:, None] - x[expected], axis=-1), atol=1e-5)
    spans = [(start, stop) for start, stop, _, _ in knn_blocks(x, 2, block_size=112, backend=backend)]
    assert spans == [(s, min(s + 112, 700)) for s in range(0, 700, 112)]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_device_search_compiles_once_per_shape(rng, precision):
    import keras

    from symm_keras.neighbors import exact as knn

    search = knn._device_search(precision)
    if keras.backend.backend() == "jax":
        compiled = search._cache_size
    elif keras.backend.backend() == "tensorflow":
        compiled = search.experimental_get_tracing_count
    else:  # torch: no XLA, the block search runs eagerly (one call per block), nothing is compiled
        assert search is knn._device_block_search
        return
    x = rng.normal(size=(650, 5)).astype("float32")  # 7 blocks of 96, the last one short (padded)
    before = compiled()
    first = exact_knn(x, 3, metric="euclidean", backend="keras", block_size=96, precision=precision)
    assert compiled() == before + 1
    second = exact_knn(x, 3, metric="euclidean", backend="keras", block_size=96, precision=precision)
    assert compiled() == before + 1
    np.testing.assert_array_equal(first[0], second[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_different_shapes_in_one_process(rng, backend):
    # TensorFlow's reduce_retracing would relax the shapes after a few traces
    # (None dimensions); the compiled search needs static ones.
    for n in range(300, 390, 10):
        x = rng.normal(size=(n, 4)).astype("float32")
        indices, _ = exact_knn(x, 2, metric="euclidean", backend=backend, block_size=64)
        np.testing.assert_array_equal(indices, stable_euclidean_neighbours(x, 2))


def test_blocks_cover_all_rows_in_order(rng):
    x = rng.normal(size=(23, 4))
    spans = [(start, stop) for start, stop, _, _ in knn_blocks(x, 3, block_size=5, backend="numpy")]
    assert spans == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]


def test_default_block_size_bounds_the_block():
    assert default_block_size(60502, 60502) * 60502 <= 1 << 25
    assert default_block_size(10, 100) == 10
    assert default_block_size(10**9, 10**9) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 5}, r"k=5 is larger than the gallery: 4 item\(s\) in the other items"),
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2, "metric": "dot"}, "metric must be one of"),
        ({"k": 2, "references": np.ones((3, 4))}, "queries have dimension 2 but references have 4"),
        ({"k": 4, "references": np.ones((3, 2))}, r"k=4 is larger than the gallery: 3 item\(s\) in the references"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        exact_knn(np.eye(5, 2), **kwargs)


def test_auto_backend(monkeypatch):
    from symm_keras.neighbors import exact as knn
    from symm_keras.neighbors import resolve_backend

    monkeypatch.setattr(knn, "accelerator_present", lambda: False)
    assert resolve_backend("auto") == "numpy"
    monkeypatch.setattr(knn, "accelerator_present", lambda: True)
    assert resolve_backend("auto") == "keras"
    assert resolve_backend("numpy") == "numpy"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("gpu")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("references", [False, True], ids=["self", "gallery"])
def test_squared_euclidean_is_the_euclidean_search_squared(rng, backend, references):
    x = rng.normal(size=(300, 6)).astype("float32")
    gallery = rng.normal(size=(200, 6)).astype("float32") if references else None
    plain = exact_knn(x, 4, references=gallery, metric="euclidean", backend=backend, block_size=64)
    squared = exact_knn(x, 4, references=gallery, metric="squared_euclidean", backend=backend, block_size=64)
    np.testing.assert_array_equal(squared[0], plain[0])
    np.testing.assert_allclose(squared[1], plain[1] ** 2, rtol=1e-5, atol=1e-6)
    y = x if gallery is None else gallery
    np.testing.assert_allclose(squared[1], np.sum((x[:, None] - y[squared[0]]) ** 2, axis=-1), rtol=1e-4, atol=1e-5)


# --- Reduced-precision candidate product + exact float32 re-rank ------------------------------


def float64_ranking(queries, references, metric):
    """``(order, values)``: every reference of each query by float64 score, nearest first (self last)."""
    q, y = queries.astype(np.float64), (queries if references is None else references).astype(np.float64)
    if metric == "cosine":
        q, y = q / np.linalg.norm(q, axis=1, keepdims=True), y / np.linalg.norm(y, axis=1, keepdims=True)
        key = -(q @ y.T)
    else:
        key = np.sum((q[:, None] - y[None]) ** 2, axis=-1)
    if references is None:
        np.fill_diagonal(key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    values = np.take_along_axis(key, order, axis=1)
    values = -values if metric == "cosine" else (np.sqrt(values) if metric == "euclidean" else values)
    return order, values


@pytest.mark.parametrize("precision", ["bfloat16", "tensorfloat32"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean", "squared_euclidean"])
@pytest.mark.parametrize("references", [False, True], ids=["self", "gallery"])
def test_reduced_precision_returns_the_exact_neighbours_and_float32_scores(rng, precision, metric, references):
    k = 5
    x = rng.normal(size=(400, 24)).astype("float32")
    gallery = rng.normal(size=(300, 24)).astype("float32") if references else None
    indices, scores = exact_knn(x, k, references=gallery, metric=metric, precision=precision, block_size=96)
    order, values = float64_ranking(x, gallery, metric)
    # Rows whose k + 1 nearest are well separated (gaps ≥ 1e-4; bfloat16 products are off by ~1e-3,
    # float32 ones by ~1e-6): there the lists must be the exact ones.
    gaps = np.abs(np.diff(values[:, : k + 1], axis=1)).min(axis=1)
    separated = gaps >= 1e-4
    assert separated.mean() > 0.8
    np.testing.assert_array_equal(indices[separated], order[separated, :k])
    # Scores are float32 scores of the returned items (a bfloat16 product would be off by ~1e-3).
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, values[:, :k], rtol=2e-6, atol=2e-6)


def test_reduced_precision_with_the_whole_gallery_as_candidates(rng):
    # k + margin exceeds the gallery: every other item is re-ranked, so the lists are the float32 ones.
    x = rng.normal(size=(40, 8)).astype("float32")
    indices, scores = exact_knn(x, 30, metric="cosine", precision="bfloat16", rerank_margin=100)
    order, values = float64_ranking(x, None, "cosine")
    np.testing.assert_allclose(scores, values[:, :30], rtol=2e-6, atol=2e-6)
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(order[:, :30], axis=1))


def test_default_block_size_bounds_the_gathered_candidates():
    rows = default_block_size(60502, 60502, rerank_elements=(1001 + 1001) * 512)
    assert rows * 2002 * 512 <= 1 << 25 and rows >= 1
    assert default_block_size(60502, 60502, rerank_elements=62 * 64) == default_block_size(60502, 60502)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "float16"}, "precision must be one of"),
        ({"precision": "bfloat16", "backend": "numpy"}, "runs on the Keras block search"),
        ({"rerank_margin": 4}, "applies to a reduced precision only"),
        ({"precision": "bfloat16", "rerank_margin": -1}, "rerank_margin must be a non-negative integer"),
    ],
)
def test_bad_precision_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        exact_knn(np.eye(6, 3), 2, **kwargs)
