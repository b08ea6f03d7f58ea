"""Recall@K, R-precision and MAP@R: hand-computed cases, ties, singletons, oracle loops."""

import warnings

import numpy as np
import pytest

from symm_keras.evaluation import retrieval_metrics
from tests.evaluation.oracles import retrieval_oracle

BACKENDS = ("keras", "numpy")

# Five points on a line (Euclidean). Neighbour lists, hand-derived:
#   q0 (0.0, c0): 1, 4, 2, 3 -> rel 1 1 0 0, R=2: R-prec 1,   AP@R 1
#   q1 (1.0, c0): 0, 4, 2, 3 -> rel 1 1 0 0, R=2: R-prec 1,   AP@R 1
#   q2 (3.0, c1): 4, 3, 1, 0 -> rel 0 1 0 0, R=1: R-prec 0,   AP@R 0
#   q3 (4.0, c1): 2, 4, 1, 0 -> rel 1 0 0 0, R=1: R-prec 1,   AP@R 1
#   q4 (2.2, c0): 2, 1, 3, 0 -> rel 0 1 0 1, R=2: R-prec 1/2, AP@R (1/2)(1/2) = 1/4
LINE = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [4.0, 0.0], [2.2, 0.0]])
LINE_LABELS = np.array([0, 0, 1, 1, 0])
LINE_EXPECTED = {"recall@1": 3 / 5, "recall@2": 1.0, "r_precision": 3.5 / 5, "map@r": 3.25 / 5}

# Exact ties (cosine). Items 0, 1, 2 coincide; 3 is orthogonal to them.
#   q0 (c0): 1 (c1, score 1), 2 (c0, 1), 3 (c1, 0) -> first hit at rank 1
#   q1 (c1): 0 (c0, 1), 2 (c0, 1), 3 (c1, 0)       -> rank 2
#   q2 (c0): 0 (c0, 1), 1 (c1, 1), 3 (c1, 0)       -> rank 0
#   q3 (c1): 0, 1, 2 all score 0 -> 0 (c0), 1 (c1) -> rank 1
# The query is dropped by index: q0 must not lose item 1 or 2 in its place.
TIES = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
TIES_LABELS = np.array([0, 1, 0, 1])
TIES_EXPECTED = {"recall@1": 1 / 4, "recall@2": 3 / 4, "recall@3": 1.0, "r_precision": 1 / 4, "map@r": 1 / 4}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_computed_line(backend, dtype):
    metrics, singletons = retrieval_metrics(
        LINE.astype(dtype), LINE_LABELS, recall_ks=(1, 2), metric="euclidean", backend=backend
    )
    assert singletons == 0
    for key, value in LINE_EXPECTED.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ties_and_self_exclusion_by_index(backend, metric):
    metrics, _ = retrieval_metrics(TIES, TIES_LABELS, recall_ks=(1, 2, 3), metric=metric, backend=backend)
    # Euclidean gives the same order: 0, 1, 2 coincide and q3 is √2 from each of them.
    for key, value in TIES_EXPECTED.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    assert metrics == pytest.approx(retrieval_oracle(TIES, TIES_LABELS, (1, 2, 3), metric))


@pytest.mark.parametrize("backend", BACKENDS)
def test_singleton_classes_are_skipped_and_counted(backend):
    # Item 4 is alone in class 7: it has no correct answer.
    x = np.concatenate([LINE[:4], [[9.0, 0.0]]])
    labels = np.array([0, 0, 1, 1, 7])
    with pytest.warns(UserWarning, match="1 query belong to single-item classes"):
        metrics, singletons = retrieval_metrics(x, labels, recall_ks=(1,), metric="euclidean", backend=backend)
    assert singletons == 1
    # Remaining queries: q0 -> 1 (hit), q1 -> 0 (hit), q2 -> 3 (hit), q3 -> 2 (hit).
    assert metrics == pytest.approx({"recall@1": 1.0, "r_precision": 1.0, "map@r": 1.0})
    with pytest.warns(UserWarning, match="counted as misses"):
        counted, _ = retrieval_metrics(
            x, labels, recall_ks=(1,), metric="euclidean", backend=backend, skip_singleton_queries=False
        )
    assert counted["recall@1"] == pytest.approx(4 / 5)
    assert counted["r_precision"] == pytest.approx(1.0)  # still undefined for the singleton: skipped


def _clustered(rng, num_classes, per_class, dim, spread, integer=False):
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)
    centres = rng.normal(size=(num_classes, dim)) * 3
    x = centres[labels] + spread * rng.normal(size=(labels.size, dim))
    if integer:
        x = np.round(x)
    return x, labels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_matches_oracle_loops(rng, backend, metric):
    x, labels = _clustered(rng, 9, 6, 8, spread=2.5)
    labels[:3] = 99  # one class of 3 plus uneven sizes
    ks = (1, 2, 4, 8, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singleton here: no warning either
        metrics, _ = retrieval_metrics(x, labels, recall_ks=ks, metric=metric, backend=backend)
    assert metrics == pytest.approx(retrieval_oracle(x, labels, ks, metric), abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_classes", [6, 25])
def test_many_exact_ties_match_oracle(rng, backend, num_classes):
    # Small integer coordinates: every squared distance is exact in float32 and
    # ties are everywhere, so rank order and tie-breaking are fully tested.
    # With 25 classes R is small and most first hits lie beyond the top-R list,
    # so the counting path (with its tie term) is the one exercised.
    x = rng.integers(-1, 2, size=(60, 3)).astype("float32")
    labels = rng.integers(0, num_classes, size=60)
    ks = (1, 3, 10, 30, 59)
    metrics, _ = retrieval_metrics(x, labels, recall_ks=ks, metric="euclidean", backend=backend)
    assert metrics == pytest.approx(retrieval_oracle(x, labels, ks, "euclidean"), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_equals_unchunked(rng, backend):
    x, labels = _clustered(rng, 12, 5, 16, spread=3.0)
    ks = (1, 2, 4, 8, 32)
    whole, _ = retrieval_metrics(x, labels, recall_ks=ks, block_size=len(labels), backend=backend)
    for block_size in (7, 59) if backend == "keras" else (1, 7, 13):
        chunked, _ = retrieval_metrics(x, labels, recall_ks=ks, block_size=block_size, backend=backend)
        assert chunked == whole


def test_keras_and_numpy_paths_agree(rng):
    x, labels = _clustered(rng, 15, 4, 32, spread=3.0)
    ks = (1, 2, 4, 8)
    for metric in ("cosine", "euclidean"):
        keras_metrics, _ = retrieval_metrics(x.astype("float32"), labels, recall_ks=ks, metric=metric, backend="keras")
        numpy_metrics, _ = retrieval_metrics(x.astype("float32"), labels, recall_ks=ks, metric=metric, backend="numpy")
        assert keras_metrics == numpy_metrics


def test_string_and_column_labels(rng):
    x, labels = _clustered(rng, 5, 4, 8, spread=2.0)
    as_int, _ = retrieval_metrics(x, labels)
    as_str, _ = retrieval_metrics(x, np.array([f"class-{v}" for v in labels]))
    as_col, _ = retrieval_metrics(x, labels[:, None])
    assert as_int == as_str == as_col


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"recall_ks": (1, 5)}, r"Recall@5 .* other 4 item"),
        ({"recall_ks": (0,)}, "positive integers"),
        ({"recall_ks": (1,), "metric": "manhattan"}, "metric must be one of"),
        ({"recall_ks": (1,), "backend": "torch"}, "backend must be one of"),
        ({"recall_ks": (1,), "block_size": 0}, "block_size must be a positive integer"),
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments(kwargs, message, backend):
    x = LINE
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(x, LINE_LABELS, **{"backend": backend, **kwargs})


def test_keras_path_copies_to_the_host_once_and_compiles_once_per_shape(rng, monkeypatch):
    # Issue 20: one compiled call per block, results kept on the device until the last block.
    import keras

    from symm_keras.evaluation import retrieval

    x, labels = _clustered(rng, 30, 5, 8, spread=3.0)  # 150 items: 4 blocks of 40, the last one padded
    retrieval_metrics(x, labels, recall_ks=(1, 4), block_size=40, backend="keras")
    copies = []
    original = retrieval.to_numpy
    monkeypatch.setattr(retrieval, "to_numpy", lambda value: copies.append(1) or original(value))
    pass_ = retrieval._device_pass()
    count = {"jax": lambda: pass_._cache_size(), "tensorflow": lambda: pass_.experimental_get_tracing_count()}
    compiled = count.get(keras.backend.backend(), lambda: 0)
    before = compiled()
    metrics, _ = retrieval_metrics(x, labels, recall_ks=(1, 4), block_size=40, backend="keras")
    assert len(copies) == 2  # relevance and first_hit, once each
    assert compiled() == before
    assert metrics == retrieval_metrics(x, labels, recall_ks=(1, 4), backend="numpy")[0]


@pytest.mark.parametrize(
    "x, labels, message",
    [
        (np.array([[0.0, np.nan], [1.0, 0.0]]), [0, 0], r"NaN or inf in 1 row\(s\): 0"),
        (np.array([[0.0, 1.0], [np.inf, 0.0], [1.0, 1.0]]), [0, 0, 1], r"row\(s\): 1"),
        (np.ones((4, 2)), [0, 0, 1], "labels has 3 entries but there are 4 embeddings"),
        (np.ones((4,)), [0, 0, 1, 1], "must be a 2-D"),
        (np.ones((3, 2)), [0, 1, 2], "every class in labels has a single item"),
        (np.ones((3, 2)), [[0, 1, 2]], "one class label per embedding"),
        (np.ones((3, 2)), [0.5, 1.0, 1.0], "integer class ids"),
    ],
)
def test_bad_input(x, labels, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(x, labels, recall_ks=(1,))


@pytest.mark.parametrize("block_size", [None, 13])
def test_keras_relevance_equals_the_host_one_with_exact_ties(rng, block_size):
    # Integer points: every Euclidean score is exact on both paths, so ties are real ties. Few
    # distinct points, singletons and classes whose best item lies far beyond R: the counted ranks
    # with their tie term, the padded last block, and first_hit = n - 1 for singletons.
    from symm_keras.evaluation.inputs import encode_labels
    from symm_keras.evaluation.retrieval import neighbour_relevance

    x = rng.integers(-2, 3, size=(200, 3)).astype("float32")
    codes, sizes = encode_labels(rng.integers(0, 90, size=200), 200)
    on_device = neighbour_relevance(x, codes, sizes, "euclidean", block_size, backend="keras")
    on_host = neighbour_relevance(x, codes, sizes, "euclidean", block_size, backend="numpy")
    np.testing.assert_array_equal(on_device.first_hit, on_host.first_hit)
    np.testing.assert_array_equal(on_device.relevance, on_host.relevance)
    assert (on_host.first_hit >= on_host.relevance.shape[1]).sum() > 20  # many ranks counted over the row
