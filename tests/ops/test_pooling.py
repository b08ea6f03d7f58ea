"""Hardest-pair pooling (Symm §3.2): loop reference, top-k, selections, one matmul."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.ops import pooling
from symm_keras.ops.pooling import (
    OFFICIAL_PAIRS,
    PAPER_PAIRS,
    hardest_pair_pooling,
    stacked_gram,
    synthetic_selection_counts,
)
from symm_keras.ops.synthesis import synthesize_pk_batch


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _loop_reference(sets, metric, set_pairs, top_k):
    sets = np.asarray(sets, np.float64)
    n = sets.shape[1]
    values = np.zeros((n, n, top_k))
    chosen = np.zeros((n, n, top_k), int)
    for i, k in itertools.product(range(n), range(n)):
        cands = []
        for idx, (s, t) in enumerate(set_pairs):
            u, v = sets[s, i], sets[t, k]
            if metric == "similarity":
                cands.append((-(u @ v), idx, u @ v))
            else:
                d2 = np.sum((u - v) ** 2)
                cands.append((d2, idx, d2 if metric == "squared_euclidean" else np.sqrt(d2)))
        cands.sort()
        for r in range(top_k):
            values[i, k, r], chosen[i, k, r] = cands[r][2], cands[r][1]
    return values, chosen


def test_pair_lists():
    assert len(PAPER_PAIRS) == 16 and set(PAPER_PAIRS) == set(itertools.product(range(4), repeat=2))
    # Released code: combinations of [A, P, sym1 = P', sym2 = A'] → set indices 0, 1, 3, 2.
    assert OFFICIAL_PAIRS == ((0, 1), (0, 3), (0, 2), (1, 3), (1, 2), (3, 2))


def test_stacked_gram_is_every_dot_product(rng):
    sets = rng.normal(size=(4, 5, 3)).astype("float32")
    gram = _np(stacked_gram(sets))
    np.testing.assert_allclose(gram, np.einsum("sid,tkd->sitk", sets, sets), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["similarity", "squared_euclidean", "euclidean"])
@pytest.mark.parametrize("pairs", ["paper", "official"])
@pytest.mark.parametrize("top_k", [1, 3])
def test_matches_loop_reference(metric, pairs, top_k, rng):
    labels = np.repeat(np.arange(6), 2)
    x = rng.normal(size=(12, 8)).astype("float32")
    sets, _, _ = synthesize_pk_batch(labels, x)
    pooled, selection = hardest_pair_pooling(sets, metric=metric, pairs=pairs, top_k=top_k)
    set_pairs = PAPER_PAIRS if pairs == "paper" else OFFICIAL_PAIRS
    values, chosen = _loop_reference(_np(sets), metric, set_pairs, top_k)
    if top_k == 1:
        values, chosen = values[..., 0], chosen[..., 0]
    off = ~np.eye(6, dtype=bool)  # the diagonal of euclidean pooling is 0 with ties
    np.testing.assert_allclose(_np(pooled), values, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(_np(selection)[off], chosen[off])


def test_selection_counts_synthetic_points(rng):
    labels = np.repeat(np.arange(6), 2)
    sets, _, _ = synthesize_pk_batch(labels, rng.normal(size=(12, 8)).astype("float32"))
    _, selection = hardest_pair_pooling(sets, pairs="paper")
    sel = _np(selection).astype(int)
    both = _np(synthetic_selection_counts(selection, "paper", "both"))
    neg = _np(synthetic_selection_counts(selection, "paper", "negative"))
    expected_both = np.vectorize(lambda j: (PAPER_PAIRS[j][0] >= 2) + (PAPER_PAIRS[j][1] >= 2))(sel)
    np.testing.assert_array_equal(both, expected_both)
    np.testing.assert_array_equal(neg, np.vectorize(lambda j: int(PAPER_PAIRS[j][1] >= 2))(sel))


def test_a_synthetic_point_is_selected_when_it_is_the_hardest():
    """Class 0 = (e1, e2); class 1 near the mirror image of one of its points."""
    a0, p0 = np.array([1.0, 0.0, 0.0]), np.array([0.6, 0.8, 0.0])
    # Mirror of a0 about p0: 2(a0·u)u − a0 = (-0.28, 0.96, 0).
    a1 = np.array([-0.3, 0.95, 0.05])
    p1 = np.array([-0.25, 0.96, -0.05])
    anchors, positives = np.array([a0, a1], "float32"), np.array([p0, p1], "float32")
    labels = np.array([0, 1, 0, 1])
    sets, _, _ = synthesize_pk_batch(labels, np.concatenate([anchors, positives]))
    pooled, selection = hardest_pair_pooling(sets, metric="euclidean", pairs="paper")
    s, t = PAPER_PAIRS[int(_np(selection)[0, 1])]
    assert s == 2  # a'_0 = mirror of a0 about p0 is the class-0 point closest to class 1
    assert _np(pooled)[0, 1] < np.min(np.linalg.norm(np.stack([a0, p0])[:, None] - np.stack([a1, p1])[None], axis=-1))


@pytest.mark.parametrize(
    "synthesis",
    [{}, {"alpha": 1.5, "beta": 0.7, "formula": "released", "force_norm": "axis"}, {"alpha": 2.5, "force_norm": "point"}],
)
def test_synthesis_gram_equals_gram_of_materialised_points(synthesis, rng):
    from symm_keras.ops.pooling import stack_point_sets, synthesis_gram
    from symm_keras.ops.synthesis import symmetric_pair_synthesis

    a = rng.normal(size=(6, 8)).astype("float32")
    p = rng.normal(size=(6, 8)).astype("float32")
    p[3] = 0.0  # a zero axis
    fast = _np(synthesis_gram(a, p, **synthesis))
    slow = _np(stacked_gram(stack_point_sets(a, p, *symmetric_pair_synthesis(a, p, **synthesis))))
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_one_matrix_product(monkeypatch, rng):
    """All 16 (or 6) candidate similarities come from a single matmul."""
    calls = []
    original = keras.ops.matmul

    def counting(a, b):
        calls.append((tuple(a.shape), tuple(b.shape)))
        return original(a, b)

    monkeypatch.setattr(pooling.ops, "matmul", counting)
    sets = rng.normal(size=(4, 6, 8)).astype("float32")
    for pairs in ("paper", "official"):
        for metric in ("similarity", "euclidean"):
            calls.clear()
            hardest_pair_pooling(sets, metric=metric, pairs=pairs)
            assert calls == [((24, 8), (8, 24))]
    # The losses' path: only the originals [A; P] are multiplied.
    from symm_keras.ops.pooling import pool_gram, symm_pk_batch

    labels = np.repeat(np.arange(6), 2)
    calls.clear()
    batch = symm_pk_batch(labels, rng.normal(size=(12, 8)).astype("float32"))
    pool_gram(batch.gram, metric="euclidean")
    assert calls == [((12, 8), (8, 12))]


def test_gradient_flows_only_to_the_selected_pair():
    from tests.losses.symm_helpers import value_and_grad

    sets = np.zeros((4, 2, 2), "float32")
    sets[0, 0] = [1.0, 0.0]
    sets[0, 1] = [0.9, 0.1]
    _, grad = value_and_grad(lambda s: ops.sum(hardest_pair_pooling(s, pairs="paper")[0][0, 1]), sets)
    expected = np.zeros_like(sets)
    expected[0, 0] = sets[0, 1]
    expected[0, 1] = sets[0, 0]
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_bad_arguments_name_themselves(rng):
    sets = rng.normal(size=(4, 3, 2)).astype("float32")
    with pytest.raises(ValueError, match="metric"):
        hardest_pair_pooling(sets, metric="cosine")
    with pytest.raises(ValueError, match="pairs"):
        hardest_pair_pooling(sets, pairs="all")
    with pytest.raises(ValueError, match="top_k"):
        hardest_pair_pooling(sets, pairs="official", top_k=7)
    with pytest.raises(ValueError, match="top_k"):
        hardest_pair_pooling(sets, top_k=0)
    with pytest.raises(ValueError, match="count"):
        synthetic_selection_counts(np.zeros((2, 2), "int32"), count="all")


@pytest.mark.parametrize("hardest", ["max", "min"])
def test_top_k_selection_takes_the_lower_index_among_ties(hardest):
    # Equal candidates (e.g. a pair and its mirror image at the same distance) are selected
    # in index order on every backend (torch.topk alone does not promise it).
    candidates = np.array([[[1.0, 3.0, 3.0, 0.0, 3.0, 1.0]]], dtype="float32")
    if hardest == "min":
        candidates = -candidates
    values, selection = pooling.pool_hardest(ops.convert_to_tensor(candidates), hardest=hardest, top_k=4)
    np.testing.assert_array_equal(ops.convert_to_numpy(selection)[0, 0], [1, 2, 4, 0])
    np.testing.assert_array_equal(ops.convert_to_numpy(values)[0, 0], candidates[0, 0, [1, 2, 4, 0]])
