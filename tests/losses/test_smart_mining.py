"""Smart Mining losses (eqs. 2–3) vs numpy float64 loop oracles; gradients, layout errors, fit."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.losses.smart_mining import (
    GlobalLoss,
    RatioTripletLoss,
    SmartMiningLoss,
    TripletTrainingError,
    global_loss,
    ratio_triplet_loss,
    smart_mining_loss,
    triplet_training_error,
)
from tests.losses.autodiff import computed_tolerance, value_and_gradient


def triplet_batch(rng, t=6, dim=5, dtype="float32"):
    labels = np.arange(t)
    y = np.concatenate([labels, labels, labels + 100])
    x = rng.normal(size=(3 * t, dim)).astype(dtype)
    return y, x


def unit(v):
    return v / np.linalg.norm(v)


def ratio_oracle(y, x, m=0.2):
    t = len(x) // 3
    total = 0.0
    for i in range(t):
        a, p, n = (unit(x[i].astype(np.float64)), unit(x[t + i].astype(np.float64)),
                   unit(x[2 * t + i].astype(np.float64)))
        total += max(0.0, 1.0 - np.linalg.norm(a - n) / (np.linalg.norm(a - p) + m))
    return total / t


def global_oracle(y, x, margin=0.01, lam=1.0):
    t = len(x) // 3
    dp, dn = [], []
    for i in range(t):
        a, p, n = (unit(x[i].astype(np.float64)), unit(x[t + i].astype(np.float64)),
                   unit(x[2 * t + i].astype(np.float64)))
        dp.append(np.sum((a - p) ** 2) / 4)
        dn.append(np.sum((a - n) ** 2) / 4)
    mp, mn = sum(dp) / t, sum(dn) / t
    vp = sum((d - mp) ** 2 for d in dp) / t
    vn = sum((d - mn) ** 2 for d in dn) / t
    return vp + vn + lam * max(0.0, mp - mn + margin)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ratio_and_global_match_loop_oracles(rng, dtype):
    y, x = triplet_batch(rng, dtype=dtype)
    tol = computed_tolerance(dtype, float32=1e-5, float64=1e-10)
    np.testing.assert_allclose(ops.convert_to_numpy(ratio_triplet_loss(y, x)), ratio_oracle(y, x), rtol=tol)
    np.testing.assert_allclose(ops.convert_to_numpy(ratio_triplet_loss(y, x, margin=0.5)),
                               ratio_oracle(y, x, 0.5), rtol=tol)
    np.testing.assert_allclose(ops.convert_to_numpy(global_loss(y, x)), global_oracle(y, x), rtol=tol, atol=tol)
    np.testing.assert_allclose(ops.convert_to_numpy(global_loss(y, x, margin=0.3, weight=2.0)),
                               global_oracle(y, x, 0.3, 2.0), rtol=tol, atol=tol)
    combined = ops.convert_to_numpy(smart_mining_loss(y, x, global_weight=0.5))
    np.testing.assert_allclose(combined, ratio_oracle(y, x) + 0.5 * global_oracle(y, x), rtol=tol, atol=tol)


def test_golden_values():
    # One triplet in 2-d: a = (1, 0), p = (0, 1), n = (-1, 0).
    y = np.array([0, 0, 1])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    # ‖a−p‖ = √2, ‖a−n‖ = 2: 1 − 2/(√2 + 0.2) < 0 → 0.
    assert float(ratio_triplet_loss(y, x)) == 0.0
    # n = p: 1 − √2/(√2 + 0.2).
    x2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    np.testing.assert_allclose(float(ratio_triplet_loss(y, x2)), 1 - np.sqrt(2) / (np.sqrt(2) + 0.2), rtol=1e-6)
    # Global with one triplet: variances 0, d⁺ = 2/4, d⁻ = 4/4 → max(0, 0.5 − 1 + 0.01) = 0.
    assert float(global_loss(y, x)) == 0.0
    np.testing.assert_allclose(float(global_loss(y, x2)), 0.01, rtol=1e-5)
    np.testing.assert_allclose(float(triplet_training_error(np.array([0, 0, 0, 0, 1, 1]),
                                                            np.concatenate([x2[:1], x[:1], x2[1:2], x2[1:2],
                                                                            x2[2:], x[2:]]))), 0.5)


def test_training_error_metric_accumulates_counts(rng):
    metric = TripletTrainingError()
    y, x = triplet_batch(rng, t=4)
    y2, x2 = triplet_batch(rng, t=2)
    metric.update_state(y, x)
    metric.update_state(y2, x2)
    e1 = float(triplet_training_error(y, x))
    e2 = float(triplet_training_error(y2, x2))
    np.testing.assert_allclose(float(metric.result()), (4 * e1 + 2 * e2) / 6, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert TripletTrainingError.from_config(metric.get_config()).margin == 0.2


@pytest.mark.parametrize("fn", [ratio_triplet_loss, global_loss, smart_mining_loss])
def test_no_nan_and_finite_gradients_for_degenerate_input(fn):
    y = np.array([0, 1, 0, 1, 2, 3])
    for x in (np.zeros((6, 4), np.float32), np.ones((6, 4), np.float32)):
        value, grad = _value_and_grad(fn, y, x)
        assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_gradient_matches_finite_differences(rng):
    y, x = triplet_batch(rng, t=3, dim=4, dtype="float64")
    _, grad = _value_and_grad(smart_mining_loss, y, x)
    eps, rtol, atol = computed_tolerance("float64", float32=(1e-2, 2e-2, 2e-3), float64=(1e-6, 1e-4, 1e-7))
    for (i, j) in [(0, 0), (4, 2), (8, 3)]:
        xp, xm = x.copy(), x.copy()
        xp[i, j] += eps
        xm[i, j] -= eps
        fd = (float(smart_mining_loss(y, xp)) - float(smart_mining_loss(y, xm))) / (2 * eps)
        np.testing.assert_allclose(grad[i, j], fd, rtol=rtol, atol=atol)


def _value_and_grad(fn, y, x):
    value, grad = value_and_gradient(lambda v: fn(y, v), x, dtype=str(x.dtype))
    return float(value), grad


@pytest.mark.parametrize(
    "y, x, match",
    [
        (np.array([0, 0, 1, 1]), np.zeros((4, 3)), "divisible by 3"),
        (np.array([0, 1, 2]), np.zeros((3, 3)), "positive of another class"),
        (np.array([0, 0, 0]), np.zeros((3, 3)), "negative of the anchor's class"),
        (np.array([0, 0]), np.zeros((3, 3)), "labels"),
        (np.array([0, 0, 1]), np.zeros((3,)), "matrix"),
    ],
)
def test_bad_layout_raises_clear_errors(y, x, match):
    with pytest.raises(ValueError, match=match):
        smart_mining_loss(y, x)


def test_ratio_margin_must_be_positive():
    with pytest.raises(ValueError, match="margin"):
        ratio_triplet_loss(np.array([0, 0, 1]), np.ones((3, 2)), margin=0.0)


@pytest.mark.parametrize("cls", [RatioTripletLoss, GlobalLoss, SmartMiningLoss])
def test_config_round_trip_and_layout(rng, cls):
    loss = cls(name="custom")
    assert loss.batch_layout == "triplets"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is cls and restored.get_config() == loss.get_config()
    y, x = triplet_batch(rng)
    np.testing.assert_allclose(float(restored(y, x)), float(loss(y, x)), rtol=1e-6)


def test_float32_under_mixed_precision(rng):
    y, x = triplet_batch(rng)
    value = SmartMiningLoss()(y, x.astype("float16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


def test_jit_fit_reduces_loss_and_reports_training_error(rng):
    t, dim = 8, 6
    model = keras.Sequential([keras.Input((dim,)), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SmartMiningLoss(),
                  metrics=[TripletTrainingError()], jit_compile=True)
    classes = rng.normal(size=(5, dim)) * 2
    batches = []
    for _ in range(6):
        a_cls = rng.integers(0, 5, t)
        n_cls = (a_cls + rng.integers(1, 5, t)) % 5
        cls = np.concatenate([a_cls, a_cls, n_cls])
        batches.append((classes[cls] + 0.3 * rng.normal(size=(3 * t, dim)), cls))
    x = np.concatenate([b[0] for b in batches]).astype("float32")
    y = np.concatenate([b[1] for b in batches])
    history = model.fit(x, y, batch_size=3 * t, epochs=4, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert 0.0 <= history.history["training_error"][-1] <= 1.0
