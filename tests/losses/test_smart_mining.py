"""Smart Mining losses (eqs. 2–3) vs numpy float64 loop oracles; gradients, layouts, fit.

Every labelling of a triplet batch is defined (module docstring of
``symm_keras.losses.smart_mining``): a triplet whose labels break the layout is
excluded. The oracles loop over the triplets straight from the paper and skip
the invalid ones; eager and compiled (TensorFlow XLA, ``jax.jit``) agree.
"""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.losses.smart_mining import (
    GlobalLoss,
    RatioTripletLoss,
    SmartMiningLoss,
    TripletTrainingError,
    check_triplet_layout,
    global_loss,
    ratio_triplet_loss,
    ratio_triplet_loss_per_sample,
    smart_mining_loss,
    smart_mining_loss_parts,
    triplet_training_error,
)
from symm_keras.metrics import loss_part_metrics
from tests.losses.autodiff import computed_tolerance, float64_enabled, to_numpy, value_and_gradient
from tests.losses.symm_helpers import jit


def triplet_batch(rng, t=6, dim=5, dtype="float32"):
    labels = np.arange(t)
    y = np.concatenate([labels, labels, labels + 100])
    x = rng.normal(size=(3 * t, dim)).astype(dtype)
    return y, x


def mixed_batch(rng, t=8, dim=5, dtype="float32"):
    """A triplet batch whose triplets 1, 4 (positive of another class) and 6 (negative
    of the anchor's class) break the layout; the rest are valid."""
    y, x = triplet_batch(rng, t, dim, dtype)
    y[t + 1] = y[1] + 1
    y[t + 4] = 100 + 4
    y[2 * t + 6] = y[6]
    return y, x


def all_invalid_batch(rng, t=4, dim=5, dtype="float32"):
    """Every triplet breaks the layout: even ones have a positive of another class,
    odd ones a negative of the anchor's class."""
    i = np.arange(t)
    y = np.concatenate([i, np.where(i % 2 == 0, i + 50, i), np.where(i % 2 == 1, i, i + 100)])
    return y, rng.normal(size=(3 * t, dim)).astype(dtype)


def unit(v):
    return v / np.linalg.norm(v)


def valid_triplets(y):
    """Indices of the triplets whose labels fit [anchors; positives; negatives]."""
    t = len(y) // 3
    return [i for i in range(t) if y[i] == y[t + i] and y[i] != y[2 * t + i]]


def triplet_rows(y, keep):
    t = len(y) // 3
    return np.concatenate([np.asarray(keep, int) + k * t for k in range(3)]).astype(int)


def _triplet(x, t, i):
    return (unit(x[i].astype(np.float64)), unit(x[t + i].astype(np.float64)),
            unit(x[2 * t + i].astype(np.float64)))


def ratio_oracle(y, x, m=0.2):
    """Eq. (2), mean over the valid triplets (0 if none)."""
    t = len(x) // 3
    terms = []
    for i in valid_triplets(y):
        a, p, n = _triplet(x, t, i)
        terms.append(max(0.0, 1.0 - np.linalg.norm(a - n) / (np.linalg.norm(a - p) + m)))
    return sum(terms) / len(terms) if terms else 0.0


def global_oracle(y, x, margin=0.01, lam=1.0):
    """Eq. (3), means and population variances over the valid triplets (0 if none)."""
    t = len(x) // 3
    dp, dn = [], []
    for i in valid_triplets(y):
        a, p, n = _triplet(x, t, i)
        dp.append(np.sum((a - p) ** 2) / 4)
        dn.append(np.sum((a - n) ** 2) / 4)
    if not dp:
        return 0.0
    k = len(dp)
    mp, mn = sum(dp) / k, sum(dn) / k
    vp = sum((d - mp) ** 2 for d in dp) / k
    vn = sum((d - mn) ** 2 for d in dn) / k
    return vp + vn + lam * max(0.0, mp - mn + margin)


def error_oracle(y, x, m=0.2):
    """Sec. 3.2.4: share of the valid triplets with ‖a−n‖ < ‖a−p‖ + m (0 if none)."""
    t = len(x) // 3
    keep = valid_triplets(y)
    violated = 0
    for i in keep:
        a, p, n = _triplet(x, t, i)
        violated += np.linalg.norm(a - n) < np.linalg.norm(a - p) + m
    return violated / len(keep) if keep else 0.0


BATCHES = {"clean": triplet_batch, "mixed": mixed_batch, "all_invalid": all_invalid_batch}


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ratio_and_global_match_loop_oracles(rng, dtype, batch):
    y, x = BATCHES[batch](rng, dtype=dtype)
    assert len(valid_triplets(y)) == {"clean": 6, "mixed": 5, "all_invalid": 0}[batch]
    with float64_enabled():
        tol = computed_tolerance(dtype, float32=1e-5, float64=1e-10)
        np.testing.assert_allclose(to_numpy(ratio_triplet_loss(y, x)), ratio_oracle(y, x), rtol=tol, atol=tol)
        np.testing.assert_allclose(to_numpy(ratio_triplet_loss(y, x, margin=0.5)),
                                   ratio_oracle(y, x, 0.5), rtol=tol, atol=tol)
        np.testing.assert_allclose(to_numpy(global_loss(y, x)), global_oracle(y, x), rtol=tol, atol=tol)
        np.testing.assert_allclose(to_numpy(global_loss(y, x, margin=0.3, weight=2.0)),
                                   global_oracle(y, x, 0.3, 2.0), rtol=tol, atol=tol)
        combined = to_numpy(smart_mining_loss(y, x, global_weight=0.5))
        np.testing.assert_allclose(combined, ratio_oracle(y, x) + 0.5 * global_oracle(y, x), rtol=tol, atol=tol)
        np.testing.assert_allclose(to_numpy(triplet_training_error(y, x)), error_oracle(y, x), atol=1e-7)
        parts = {k: float(to_numpy(v)) for k, v in smart_mining_loss_parts(y, x).items()}
    assert parts["valid_share"] == len(valid_triplets(y)) / (len(y) // 3)
    np.testing.assert_allclose(parts["active_share"], error_oracle(y, x), atol=1e-7)
    if batch != "all_invalid":
        assert ratio_oracle(y, x) > 0.0 and global_oracle(y, x) > 0.0  # the comparisons above are not 0 == 0


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
    y2, x2 = mixed_batch(rng, t=8)  # 5 valid triplets of 8: only those are counted
    y3, x3 = all_invalid_batch(rng)
    for labels, emb in ((y, x), (y2, x2), (y3, x3)):
        metric.update_state(labels, emb)
    e1, e2 = error_oracle(y, x), error_oracle(y2, x2)
    np.testing.assert_allclose(float(metric.result()), (4 * e1 + 5 * e2) / 9, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert TripletTrainingError.from_config(metric.get_config()).margin == 0.2


@pytest.mark.parametrize("fn", [ratio_triplet_loss, global_loss, smart_mining_loss])
def test_no_nan_and_finite_gradients_for_degenerate_input(fn):
    valid = np.array([0, 1, 0, 1, 2, 3])
    none_valid = np.array([0, 1, 1, 0, 0, 2])  # positive of another class; negative of the anchor's class
    for x in (np.zeros((6, 4), np.float32), np.ones((6, 4), np.float32)):
        value, grad = _value_and_grad(fn, valid, x)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        value, grad = _value_and_grad(fn, none_valid, x)
        assert value == 0.0 and np.all(grad == 0.0)


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
        (np.array([0, 0]), np.zeros((3, 3)), "labels"),
        (np.array([0, 0, 1]), np.zeros((3,)), "matrix"),
    ],
)
def test_bad_shapes_raise_clear_errors(y, x, match):
    with pytest.raises(ValueError, match=match):
        smart_mining_loss(y, x)


def test_check_triplet_layout_is_an_opt_in_eager_check():
    with pytest.raises(ValueError, match=r"triplets \[0\] have a positive of another class"):
        check_triplet_layout(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="negative of the anchor's class"):
        check_triplet_layout(np.array([0, 0, 0]))
    check_triplet_layout(np.array([0, 1, 0, 1, 2, 2]))  # valid: no error
    # The losses never call it: a bad layout is defined (triplets excluded), not an error.
    assert float(to_numpy(smart_mining_loss(np.array([0, 1, 2]), np.eye(3, dtype="float32")))) == 0.0


def _compiled_value_and_gradient(fn, x):
    """``(fn(x), ∂fn/∂x)`` of the XLA-compiled ``fn`` (TensorFlow ``jit_compile``, ``jax.jit``)."""
    if keras.backend.backend() == "jax":
        import jax

        value, grad = jit(jax.value_and_grad(fn))(ops.convert_to_tensor(x))
        return np.asarray(value), np.asarray(grad)
    import tensorflow as tf

    def run(xt):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(xt)
        return value, tape.gradient(value, xt)

    value, grad = jit(run)(tf.convert_to_tensor(x))
    return value.numpy(), grad.numpy()


SCALARS = {
    "ratio": (ratio_triplet_loss, ratio_oracle),
    "global": (global_loss, global_oracle),
    "combined": (smart_mining_loss, lambda y, x: ratio_oracle(y, x) + global_oracle(y, x)),
    "per_sample_sum": (lambda y, x: ops.sum(ratio_triplet_loss_per_sample(y, x)),
                       lambda y, x: len(y) * ratio_oracle(y, x)),
}


@pytest.mark.parametrize("batch", ["mixed", "all_invalid"])
@pytest.mark.parametrize("name", sorted(SCALARS))
def test_bad_layouts_are_defined_eagerly_and_compiled(rng, name, batch):
    """Invalid triplets are excluded the same way eagerly and under XLA: the value is
    the oracle's (= the loss on the valid triplets alone) and their rows get exactly
    zero gradient (a masked ``where`` by construction). Torch runs eagerly."""
    fn, oracle = SCALARS[name]
    y, x = BATCHES[batch](rng)
    expected = oracle(y, x)
    keep = triplet_rows(y, valid_triplets(y))
    dropped = np.setdiff1d(np.arange(len(y)), keep)
    runs = {"eager": value_and_gradient(lambda e: fn(y, e), x)}
    if keras.backend.backend() in ("tensorflow", "jax"):
        runs["compiled"] = _compiled_value_and_gradient(lambda e: fn(y, e), x)
    for mode, (value, grad) in runs.items():
        np.testing.assert_allclose(float(value), expected, rtol=1e-5, atol=1e-6, err_msg=mode)
        assert np.all(np.isfinite(grad)), mode
        assert np.all(grad[dropped] == 0.0), mode
        if batch == "mixed":
            assert np.any(grad[keep] != 0.0), mode
            # The documented value: the same loss on the valid triplets alone.
            subset = float(to_numpy(fn(y[keep], x[keep])))
            scale = len(y) / len(keep) if name == "per_sample_sum" else 1.0
            np.testing.assert_allclose(float(value), scale * subset, rtol=1e-5, atol=1e-6, err_msg=mode)
    if "compiled" in runs:
        np.testing.assert_allclose(runs["compiled"][1], runs["eager"][1], rtol=1e-5, atol=1e-6)


def test_training_error_and_parts_compiled_match_eager(rng):
    y, x = mixed_batch(rng)

    def measures(e):
        parts = smart_mining_loss_parts(y, e)
        return ops.stack([triplet_training_error(y, e), parts["active_share"], parts["valid_share"],
                          parts["loss"]])

    expected = [error_oracle(y, x), error_oracle(y, x), 5 / 8, ratio_oracle(y, x) + global_oracle(y, x)]
    np.testing.assert_allclose(to_numpy(measures(x)), expected, rtol=1e-5, atol=1e-6)
    if keras.backend.backend() in ("tensorflow", "jax"):
        np.testing.assert_allclose(to_numpy(jit(measures)(ops.convert_to_tensor(x))), expected, rtol=1e-5, atol=1e-6)


def test_per_sample_values_of_a_mixed_batch(rng):
    """Keras contract: rows of invalid triplets are 0, the mean is the loss, each valid
    triplet's term is shared by its three rows; sample_weight weights rows."""
    y, x = mixed_batch(rng)
    t, keep = len(y) // 3, valid_triplets(y)
    per_sample = to_numpy(RatioTripletLoss(reduction="none")(y, x))
    dropped = np.setdiff1d(np.arange(len(y)), triplet_rows(y, keep))
    assert np.all(per_sample[dropped] == 0.0) and np.all(per_sample[triplet_rows(y, keep)] >= 0.0)
    np.testing.assert_allclose(per_sample[:t], per_sample[t:2 * t], rtol=1e-6)
    np.testing.assert_allclose(per_sample.mean(), ratio_oracle(y, x), rtol=1e-5)
    np.testing.assert_allclose(float(to_numpy(RatioTripletLoss(reduction="sum")(y, x))),
                               len(y) * ratio_oracle(y, x), rtol=1e-5)
    weights = np.linspace(0.0, 2.0, len(y)).astype("float32")
    np.testing.assert_allclose(float(to_numpy(RatioTripletLoss()(y, x, sample_weight=weights))),
                               np.sum(weights * per_sample) / len(y), rtol=1e-5)
    for cls in (GlobalLoss, SmartMiningLoss):  # batch-level: still refused
        with pytest.raises(ValueError, match="no per-sample form"):
            cls(reduction="none")(y, x)


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


def _fit_model(dim, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(4)])


def _jit_compile():
    """XLA in ``model.fit`` on TensorFlow and JAX; Keras's torch backend runs eagerly."""
    return keras.backend.backend() != "torch"


def test_fit_trains_only_on_the_valid_triplets(rng):
    """``model.fit`` (compiled on TF/JAX) on a batch with invalid triplets: the logged
    loss, training error and valid share are the valid triplets' (frozen model), and
    one SGD step moves the weights exactly as a step on the valid triplets alone."""
    y, x = mixed_batch(rng, t=8, dim=6)
    keep = triplet_rows(y, valid_triplets(y))
    loss = SmartMiningLoss()
    frozen = _fit_model(6)
    frozen.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, jit_compile=_jit_compile(),
                   metrics=[TripletTrainingError(), *loss_part_metrics(loss)])
    logs = frozen.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0).history
    out = to_numpy(frozen(x)).astype(np.float64)
    np.testing.assert_allclose(logs["loss"][0], ratio_oracle(y, out) + global_oracle(y, out), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logs["training_error"][0], error_oracle(y, out), atol=1e-6)
    np.testing.assert_allclose(logs["smart_mining_active_share"][0], error_oracle(y, out), atol=1e-6)
    np.testing.assert_allclose(logs["smart_mining_valid_share"][0], 5 / 8, atol=1e-7)
    assert logs["loss"][0] > 0.0

    def one_step(labels, emb):
        model = _fit_model(6)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=SmartMiningLoss(), jit_compile=_jit_compile())
        model.fit(emb, labels, batch_size=len(labels), epochs=1, shuffle=False, verbose=0)
        return [to_numpy(w) for w in model.weights]

    start = [to_numpy(w) for w in _fit_model(6).weights]
    mixed, valid_only = one_step(y, x), one_step(y[keep], x[keep])
    for w_mixed, w_valid, w0 in zip(mixed, valid_only, start):
        assert np.max(np.abs(w_mixed - w0)) > 1e-4  # it trained
        np.testing.assert_allclose(w_mixed, w_valid, rtol=1e-5, atol=1e-6)


def test_fit_on_shuffled_data_without_valid_triplets_does_not_move(rng):
    """``model.fit(x, y, batch_size=12)`` on ordinary data whose every triplet breaks the
    layout: loss 0, zero gradient, weights unchanged (SGD: w − lr·0 = w exactly)."""
    y, x = all_invalid_batch(rng, t=4, dim=6)
    y, x = np.concatenate([y, y]), np.concatenate([x, x + 1.0])
    model = _fit_model(6)
    start = [to_numpy(w) for w in model.weights]
    loss = SmartMiningLoss()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=_jit_compile(),
                  metrics=[TripletTrainingError(), *loss_part_metrics(loss)])
    logs = model.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0).history
    for w, w0 in zip(model.weights, start):
        np.testing.assert_array_equal(to_numpy(w), w0)
    assert logs["loss"] == [0.0, 0.0] and logs["smart_mining_valid_share"] == [0.0, 0.0]
    assert logs["training_error"] == [0.0, 0.0]
