import numpy as np
import pytest
from keras import ops

from symm_keras.ops.reductions import (
    masked_any,
    masked_count,
    masked_logsumexp,
    masked_max,
    masked_mean,
    masked_min,
    masked_softplus_logsumexp,
    masked_sum,
    safe_mean,
)
from tests.losses.autodiff import to_numpy, value_and_gradient

X = np.array([[1.0, 5.0, -3.0, 0.5], [2.0, 2.0, 2.0, 2.0], [-1.0, 7.0, 3.0, 3.0]], "float32")
M = np.array([[True, False, True, True], [False, False, False, False], [False, True, False, True]])


def _loop(reduce, empty):
    return np.array([reduce(row[m]) if m.any() else empty for row, m in zip(X.astype(np.float64), M)])


@pytest.mark.parametrize(
    "fn, reduce",
    [
        (masked_max, np.max),
        (masked_min, np.min),
        (masked_sum, np.sum),
        (masked_mean, np.mean),
        (masked_logsumexp, lambda v: np.log(np.sum(np.exp(v)))),
        (masked_softplus_logsumexp, lambda v: np.log1p(np.sum(np.exp(v)))),
    ],
)
def test_rows_match_numpy_loops(fn, reduce):
    np.testing.assert_allclose(to_numpy(fn(X, M, axis=1)), _loop(reduce, 0.0), rtol=1e-6, atol=1e-7)
    kept = to_numpy(fn(X, M, axis=1, keepdims=True))
    assert kept.shape == (3, 1)


def test_whole_tensor_and_columns():
    np.testing.assert_allclose(to_numpy(masked_max(X, M)), 7.0)
    np.testing.assert_allclose(to_numpy(masked_min(X, M, axis=0)), [1.0, 7.0, -3.0, 0.5])
    np.testing.assert_allclose(to_numpy(masked_count(M, axis=1)), [3, 0, 2])
    assert to_numpy(masked_any(M, axis=1)).tolist() == [True, False, True]


def test_empty_value_is_used():
    got = to_numpy(masked_max(X, M, axis=1, empty_value=-5.0))
    assert got[1] == -5.0
    got = to_numpy(masked_logsumexp(X, M, axis=1, empty_value=-7.0))
    assert got[1] == -7.0


def test_logsumexp_is_stable_for_huge_inputs():
    x = np.array([[1e4, 1e4 - 1.0, -1e4]], "float32")
    m = np.array([[True, True, False]])
    np.testing.assert_allclose(to_numpy(masked_logsumexp(x, m, axis=1)), [1e4 + np.log1p(np.exp(-1.0))], rtol=1e-7)
    x = -x
    np.testing.assert_allclose(
        to_numpy(masked_logsumexp(x, m, axis=1)), [-1e4 + 1.0 + np.log1p(np.exp(-1.0))], rtol=1e-6
    )


def test_masked_out_entries_never_leak():
    # Huge or infinite values outside the mask change neither value nor gradient.
    x = np.array([[1.0, 2.0, 3e38]], "float32")
    m = np.array([[True, True, False]])
    for fn in (masked_max, masked_min, masked_mean, masked_sum, masked_logsumexp):
        value, grad = value_and_gradient(lambda t, fn=fn: fn(t, m, axis=1)[0], x)
        assert np.isfinite(value)
        assert grad[0, 2] == 0.0
        assert np.all(np.isfinite(grad))


def test_gradients_go_to_selected_entries():
    x = np.array([[1.0, 5.0, 2.0]], "float32")
    m = np.array([[True, False, True]])
    _, grad = value_and_gradient(lambda t: masked_max(t, m, axis=1)[0], x)
    np.testing.assert_array_equal(grad, [[0.0, 0.0, 1.0]])
    _, grad = value_and_gradient(lambda t: masked_mean(t, m, axis=1)[0], x)
    np.testing.assert_allclose(grad, [[0.5, 0.0, 0.5]])
    _, grad = value_and_gradient(lambda t: masked_logsumexp(t, m, axis=1)[0], x)
    soft = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
    np.testing.assert_allclose(grad, [[soft[0], 0.0, soft[1]]], rtol=1e-6)


@pytest.mark.parametrize(
    "fn", [masked_max, masked_min, masked_mean, masked_sum, masked_logsumexp, masked_softplus_logsumexp]
)
def test_empty_set_gives_zero_with_zero_gradient(fn):
    x = np.array([[1.0, -2.0, 3.0]], "float32")
    m = np.zeros((1, 3), bool)
    value, grad = value_and_gradient(lambda t: ops.sum(fn(t, m, axis=1)), x)
    assert value == 0.0
    assert np.all(grad == 0.0)


def test_ties_with_the_filler_cannot_happen():
    # All entries equal: the masked max takes the full gradient (no split with fillers).
    x = np.array([[2.0, 2.0, 2.0]], "float32")
    m = np.array([[False, True, False]])
    _, grad = value_and_gradient(lambda t: masked_max(t, m, axis=1)[0], x)
    np.testing.assert_array_equal(grad, [[0.0, 1.0, 0.0]])


def test_safe_mean():
    assert float(to_numpy(safe_mean(np.zeros((0,), "float32")))) == 0.0
    np.testing.assert_allclose(to_numpy(safe_mean(X, axis=0)), X.mean(axis=0), rtol=1e-6)
