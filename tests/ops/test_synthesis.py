"""Geometry of symmetrical synthesis (Symm eq. 1–2, §3.1, Fig. 2 and 4)."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.ops.synthesis import (
    class_pair_negatives,
    mirror_points,
    symmetric_pair_synthesis,
    synthesize_pk_batch,
)
from tests.losses.autodiff import float64_enabled


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _cos(u, v):
    return np.sum(u * v, -1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))


@pytest.fixture
def points(rng):
    x = rng.normal(size=(12, 8)).astype("float32")
    y = rng.normal(size=(12, 8)).astype("float32") * rng.uniform(0.5, 3.0, size=(12, 1)).astype("float32")
    return x, y


def test_mirror_keeps_norm_similarity_and_distance_to_axis(points):
    x, y = points
    m = _np(mirror_points(x, y))
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    np.testing.assert_allclose(np.sum(m * y, 1), np.sum(x * y, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(m - y, axis=1), np.linalg.norm(x - y, axis=1), rtol=1e-5)


def test_mirror_is_the_reflection_about_the_axis_line(points):
    x, y = points
    m = _np(mirror_points(x, y))
    # x + x' is parallel to y (twice the projection), x − x' orthogonal to y.
    u = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(m + x, 2 * np.sum(x * u, 1, keepdims=True) * u, atol=1e-5)
    np.testing.assert_allclose(np.sum((x - m) * y, 1), 0.0, atol=1e-4)
    # Mirroring twice gives the point back.
    np.testing.assert_allclose(_np(mirror_points(m.astype("float32"), y)), x, atol=1e-5)


def test_synthetic_points_of_unit_vectors_are_unit(points):
    x, y = points
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    a_syn, p_syn = symmetric_pair_synthesis(x, y)
    np.testing.assert_allclose(np.linalg.norm(_np(a_syn), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(_np(p_syn), axis=1), 1.0, rtol=1e-5)
    # Symmetric pairs: x↔y = x'↔y = x↔y' (§3.1).
    np.testing.assert_allclose(np.sum(_np(a_syn) * y, 1), np.sum(x * y, 1), atol=1e-5)
    np.testing.assert_allclose(np.sum(x * _np(p_syn), 1), np.sum(x * y, 1), atol=1e-5)


def test_alpha_moves_along_the_segment_and_changes_similarity(points):
    """Fig. 2 / 4: α = 0 is x, α = 1 the projection, α = 1.5 more similar to y, 2.5 less."""
    x, y = points
    np.testing.assert_allclose(_np(mirror_points(x, y, alpha=0.0)), x, atol=1e-6)
    r = _np(mirror_points(x, y, alpha=1.0))
    np.testing.assert_allclose(np.abs(_cos(r, y)), 1.0, atol=1e-5)
    acute = _cos(x, y) > 0.05
    c15 = _cos(_np(mirror_points(x, y, alpha=1.5, force_norm="point")), y)
    c25 = _cos(_np(mirror_points(x, y, alpha=2.5, force_norm="point")), y)
    assert np.all(c15[acute] > _cos(x, y)[acute]) and np.all(c25[acute] < _cos(x, y)[acute])


def test_beta_scales_the_norm_and_keeps_the_similarity(points):
    x, y = points
    base = _np(mirror_points(x, y))
    for beta in (0.5, 1.5):
        scaled = _np(mirror_points(x, y, beta=beta))
        np.testing.assert_allclose(scaled, beta * base, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_cos(scaled, y), _cos(base, y), atol=1e-5)


def test_norm_forcing_point_and_axis(points):
    x, y = points
    for alpha in (1.5, 2.5):
        pt = _np(mirror_points(x, y, alpha=alpha, force_norm="point"))
        ax = _np(mirror_points(x, y, alpha=alpha, force_norm="axis", formula="released"))
        np.testing.assert_allclose(np.linalg.norm(pt, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(ax, axis=1), np.linalg.norm(y, axis=1), rtol=1e-5)


def test_paper_and_released_formulas_agree_only_at_alpha_two(points):
    x, y = points
    np.testing.assert_allclose(
        _np(mirror_points(x, y, formula="paper")), _np(mirror_points(x, y, formula="released")), atol=1e-6
    )
    u = y / np.linalg.norm(y, axis=1, keepdims=True)
    r = np.sum(x * u, 1, keepdims=True) * u
    released = _np(mirror_points(x, y, alpha=1.5, beta=0.9, formula="released"))
    paper = _np(mirror_points(x, y, alpha=1.5, beta=0.9, formula="paper"))
    np.testing.assert_allclose(released, 0.9 * (1.5 * r - x), atol=1e-5)
    np.testing.assert_allclose(paper, 0.9 * (1.5 * (r - x) + x), atol=1e-5)
    assert np.max(np.abs(released - paper)) > 0.1


def test_zero_vectors_give_finite_points_and_gradients():
    x = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], "float32")
    y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], "float32")
    for force_norm in (None, "point", "axis"):
        m = _np(mirror_points(x, y, force_norm=force_norm))
        assert np.all(np.isfinite(m))
    # A zero axis has no direction: the projection is 0, so x' = β(1 − α)x.
    np.testing.assert_allclose(_np(mirror_points(x, y))[1], -x[1], atol=1e-6)
    from tests.losses.symm_helpers import value_and_grad

    for force_norm in (None, "point"):
        _, grad = value_and_grad(lambda e: ops.sum(mirror_points(e, y, force_norm=force_norm)), x)
        assert np.all(np.isfinite(grad))


def test_float64_stays_float64():
    x = np.ones((2, 3))
    with float64_enabled():  # no matrix product: float64 on every backend (JAX with x64)
        assert keras.backend.standardize_dtype(mirror_points(x, x + 1.0).dtype) == "float64"


def test_bad_arguments_name_themselves():
    x = np.ones((2, 3), "float32")
    with pytest.raises(ValueError, match="formula"):
        mirror_points(x, x, formula="tf")
    with pytest.raises(ValueError, match="force_norm"):
        mirror_points(x, x, force_norm=True)
    with pytest.raises(ValueError, match="alpha"):
        mirror_points(x, x, alpha=None)


def test_synthesize_pk_batch_orders_sets_and_pairs_by_label(rng):
    labels = np.array([5, 9, 9, 5, 2, 2])
    x = rng.normal(size=(6, 4)).astype("float32")
    sets, pair_labels, pair_valid = synthesize_pk_batch(labels, x)
    sets = _np(sets)
    assert sets.shape == (4, 3, 4)
    np.testing.assert_array_equal(_np(pair_labels), [5, 9, 2])
    assert np.all(_np(pair_valid))
    np.testing.assert_allclose(sets[0], x[[0, 1, 4]], atol=1e-7)
    np.testing.assert_allclose(sets[1], x[[3, 2, 5]], atol=1e-7)
    np.testing.assert_allclose(sets[2], _np(mirror_points(x[[0, 1, 4]], x[[3, 2, 5]])), atol=1e-6)
    np.testing.assert_allclose(sets[3], _np(mirror_points(x[[3, 2, 5]], x[[0, 1, 4]])), atol=1e-6)
    neg = _np(class_pair_negatives(pair_labels, pair_valid))
    np.testing.assert_array_equal(neg, 1.0 - np.eye(3))


def test_synthesize_pk_batch_pads_other_layouts():
    x = np.arange(5, dtype="float32")[:, None] * np.ones((1, 3), "float32")
    sets, pair_labels, pair_valid = synthesize_pk_batch(np.array([4, 4, 4, 1, 7]), x)
    # One pair (class 4: rows 0, 1); the second slot is padding.
    np.testing.assert_array_equal(_np(pair_valid), [True, False])
    assert int(_np(pair_labels)[0]) == 4
    np.testing.assert_allclose(_np(sets)[:2, 0, 0], [0.0, 1.0])
