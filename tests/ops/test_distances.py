import numpy as np
from keras import ops

from symm_keras.ops.distances import (
    l2_normalize,
    pairwise_distances,
    pairwise_similarities,
    pairwise_squared_distances,
    safe_sqrt,
)
from tests.losses.autodiff import computed_tolerance, float64_enabled, to_numpy, value_and_gradient


def _loops(x, y):
    d2 = np.array([[np.sum((a - b) ** 2) for b in y] for a in x])
    s = np.array([[np.dot(a, b) for b in y] for a in x])
    return d2, s


def test_match_loops(rng):
    x = rng.normal(size=(6, 5))
    y = rng.normal(size=(4, 5))
    d2, s = _loops(x, y)
    np.testing.assert_allclose(to_numpy(pairwise_squared_distances(x.astype("float32"), y.astype("float32"))), d2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(pairwise_distances(x.astype("float32"), y.astype("float32"))), np.sqrt(d2), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(pairwise_similarities(x.astype("float32"), y.astype("float32"))), s, rtol=1e-5, atol=1e-6)
    with float64_enabled():
        got = to_numpy(pairwise_squared_distances(ops.convert_to_tensor(x, "float64")))
        tol = computed_tolerance("float64", float32=1e-5, float64=1e-12)
    np.testing.assert_allclose(got, _loops(x, x)[0], rtol=tol, atol=tol)


def test_self_distances_have_an_exact_zero_diagonal(rng):
    x = (1e3 * rng.normal(size=(5, 3))).astype("float32")
    d2 = to_numpy(pairwise_squared_distances(x))
    assert np.all(np.diag(d2) == 0.0)
    assert np.all(d2 >= 0.0)
    np.testing.assert_allclose(d2, d2.T, rtol=1e-6)


def test_zero_distance_has_a_finite_gradient():
    x = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], "float32")
    value, grad = value_and_gradient(lambda t: ops.sum(pairwise_distances(t)), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    _, grad = value_and_gradient(lambda t: ops.sum(safe_sqrt(t)), np.zeros((3,), "float32"))
    assert np.all(grad == 0.0)


def test_l2_normalize(rng):
    x = rng.normal(size=(4, 3)).astype("float32")
    x[1] = 0.0
    unit = to_numpy(l2_normalize(x))
    norms = np.linalg.norm(unit, axis=1)
    np.testing.assert_allclose(norms[[0, 2, 3]], 1.0, rtol=1e-6)
    assert norms[1] == 0.0
    _, grad = value_and_gradient(lambda t: ops.sum(l2_normalize(t)), x)
    assert np.all(np.isfinite(grad))
