"""Per-variable learning-rate multipliers: m × the plain optimizer's step, on TensorFlow and JAX."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.models.embedding import build_embedding_model, head_lr_multipliers
from symm_keras.models.lr_multiplier import (
    AdamWithLRMultipliers,
    LRMultiplierMixin,
    SGDWithLRMultipliers,
    lr_multiplier_class,
    with_lr_multipliers,
)

GRADS = [np.array([[0.3, -1.2], [2.0, 0.01], [-0.5, 0.7]]), np.array([0.5, -2.0])]


def deltas(optimizer, dtype="float32", steps=1, b0=0.0):
    """Change of two variables, 'backbone_w' (starts at 1) and 'b' (starts at b0), after `steps` updates.

    ``b0 = 0`` keeps the change of ``b`` free of float32 cancellation.
    """
    a = keras.Variable(np.ones((3, 2)), dtype=dtype, name="backbone_w")
    b = keras.Variable(np.full((2,), b0), dtype=dtype, name="b")
    grads = [g.astype(dtype) for g in GRADS]
    for _ in range(steps):
        optimizer.apply(grads, [a, b])
    return ops.convert_to_numpy(a) - 1.0, ops.convert_to_numpy(b) - b0


def adam_first_step_oracle(g, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Kingma & Ba Alg. 1, t = 1, with Keras's epsilon placement: lr·√(1−β2)/(1−β1) · m / (√v + ε)."""
    m, v = (1 - beta_1) * g, (1 - beta_2) * g * g
    return -lr * np.sqrt(1 - beta_2) / (1 - beta_1) * m / (np.sqrt(v) + epsilon)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("multiplier", [10.0, 0.5, 0.0])
def test_adam_step_is_multiplier_times_plain(dtype, multiplier):
    plain_a, plain_b = deltas(keras.optimizers.Adam(1e-3), dtype)
    a, b = deltas(AdamWithLRMultipliers(1e-3, lr_multipliers={"^b$": multiplier}), dtype)
    np.testing.assert_array_equal(a, plain_a)
    tol = 2e-6 if dtype == "float32" or keras.backend.backend() == "jax" else 1e-12  # JAX: x64 off
    np.testing.assert_allclose(b, multiplier * plain_b, rtol=tol, atol=1e-12)
    np.testing.assert_allclose(b, multiplier * adam_first_step_oracle(GRADS[1], 1e-3), rtol=1e-5)
    # with fixed gradients Adam's update does not depend on θ: every later step is m × too
    _, plain_b3 = deltas(keras.optimizers.Adam(1e-3), dtype, steps=3)
    _, b3 = deltas(AdamWithLRMultipliers(1e-3, lr_multipliers={"^b$": multiplier}), dtype, steps=3)
    np.testing.assert_allclose(b3, multiplier * plain_b3, rtol=tol, atol=1e-12)


def test_scaling_the_gradient_instead_is_wrong_under_adam():
    _, plain_b = deltas(keras.optimizers.Adam(1e-3))
    opt = keras.optimizers.Adam(1e-3)
    b = keras.Variable(np.zeros((2,)), dtype="float32")
    opt.apply([10.0 * GRADS[1].astype("float32")], [b])
    np.testing.assert_allclose(ops.convert_to_numpy(b), plain_b, rtol=1e-5)  # not 10×


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_steps_are_exactly_multiplier_times_plain(momentum, nesterov):
    kwargs = dict(learning_rate=0.1, momentum=momentum, nesterov=nesterov)
    plain_a, plain_b = deltas(keras.optimizers.SGD(**kwargs), steps=3)
    a, b = deltas(SGDWithLRMultipliers(**kwargs, lr_multipliers={"^b$": 10.0}), steps=3)
    np.testing.assert_array_equal(a, plain_a)
    np.testing.assert_allclose(b, 10.0 * plain_b, rtol=2e-6)
    if momentum == 0.0:
        np.testing.assert_allclose(b, -10.0 * 0.1 * 3 * GRADS[1], rtol=1e-6)  # plain SGD, 3 steps


def test_sgd_weight_decay_uses_the_multiplied_rate():
    """θ ← θ − m·lr·(g + wd·θ) on the first step (Caffe lr_mult semantics), plain rate elsewhere."""
    kwargs = dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01)
    plain_a, plain_b = deltas(keras.optimizers.SGD(**kwargs), b0=2.0)
    a, b = deltas(SGDWithLRMultipliers(**kwargs, lr_multipliers={"^b$": 10.0}), b0=2.0)
    np.testing.assert_allclose(a, plain_a, rtol=1e-6)
    np.testing.assert_allclose(b, 10.0 * plain_b, rtol=2e-4)  # float32 deltas of a variable at 2.0
    np.testing.assert_allclose(b, -10.0 * 0.1 * (GRADS[1] + 0.01 * 2.0), rtol=1e-5)


def test_fit_step_on_embedding_model(rng):
    """A real model.fit step (jit-compiled; JAX: stateless path): head moves m ×, backbone 1 ×."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="bb")
    x_data = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    y_data = rng.normal(size=(6, 5)).astype("float32")

    def one_step(optimizer):
        keras.utils.set_random_seed(3)
        model = build_embedding_model(keras.models.clone_model(backbone), embedding_dim=5)
        before = [ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x_data, y_data, batch_size=6, epochs=1, shuffle=False, verbose=0)
        after = [ops.convert_to_numpy(v) for v in model.trainable_variables]
        return {v.path: a - b for v, a, b in zip(model.trainable_variables, after, before)}

    plain = one_step(keras.optimizers.Adam(1e-3))
    multiplied = one_step(with_lr_multipliers(keras.optimizers.Adam(1e-3), head_lr_multipliers(10.0)))
    for path, delta in plain.items():
        factor = 10.0 if path.startswith("embedding_head/") else 1.0
        np.testing.assert_allclose(multiplied[path], factor * delta, rtol=1e-4, atol=1e-9)
        assert np.any(delta != 0), path


def test_config_round_trip_and_saving(tmp_path):
    opt = with_lr_multipliers("adam", {"^embedding_head/": 10.0, "bias$": 2})
    assert isinstance(opt, AdamWithLRMultipliers) and opt.lr_multipliers == {"^embedding_head/": 10.0, "bias$": 2.0}
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is AdamWithLRMultipliers and again.lr_multipliers == opt.lr_multipliers
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="embedding_head")(inputs))
    model.compile(optimizer=with_lr_multipliers(keras.optimizers.SGD(0.1, momentum=0.9), head_lr_multipliers()), loss="mse")
    model.fit(np.ones((4, 3)), np.zeros((4, 2)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer).__name__ == "SGDWithLRMultipliers"
    assert loaded.optimizer.lr_multipliers == {"^embedding_head/": 10.0} and loaded.optimizer.momentum == 0.9


def test_first_matching_pattern_wins_and_other_optimizers():
    opt = with_lr_multipliers(keras.optimizers.Nadam, {"head": 3.0, "head/kernel": 5.0})
    assert type(opt).__name__ == "NadamWithLRMultipliers" and isinstance(opt, LRMultiplierMixin)
    assert lr_multiplier_class(keras.optimizers.Nadam) is type(opt)
    assert keras.saving.get_registered_object("symm_keras>NadamWithLRMultipliers") is type(opt)
    variable = keras.Variable(np.zeros(2), name="kernel")
    assert opt.lr_multiplier_for(variable) == 1.0
    _, plain_b = deltas(keras.optimizers.Nadam(1e-3))
    _, b = deltas(with_lr_multipliers(keras.optimizers.Nadam(1e-3), {"^b$": 4.0}))
    np.testing.assert_allclose(b, 4.0 * plain_b, rtol=2e-6)


def test_bad_arguments():
    with pytest.raises(TypeError, match="must be a dict"):
        AdamWithLRMultipliers(lr_multipliers=[("head", 10)])
    with pytest.raises(ValueError, match="not a valid regex"):
        AdamWithLRMultipliers(lr_multipliers={"(": 10})
    with pytest.raises(ValueError, match="finite and >= 0"):
        AdamWithLRMultipliers(lr_multipliers={"head": -1})
    with pytest.raises(TypeError, match="must be a number"):
        AdamWithLRMultipliers(lr_multipliers={"head": "ten"})
    with pytest.raises(TypeError, match="inner optimizer"):
        with_lr_multipliers(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), {"x": 2})
    with pytest.raises(TypeError, match="Optimizer subclass"):
        lr_multiplier_class(dict)


@pytest.mark.backend("tensorflow")  # tf.distribute
def test_mirrored_strategy_one_device():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        opt = AdamWithLRMultipliers(1e-3, lr_multipliers={"^b$": 10.0})
        a = keras.Variable(np.ones((3, 2)), dtype="float32", name="backbone_w")
        b = keras.Variable(np.zeros((2,)), dtype="float32", name="b")

    @tf.function
    def step():
        strategy.run(lambda: opt.apply([tf.constant(g, tf.float32) for g in GRADS], [a, b]))

    step()
    _, plain_b = deltas(keras.optimizers.Adam(1e-3))
    np.testing.assert_allclose(ops.convert_to_numpy(b), 10.0 * plain_b, rtol=2e-6)


@pytest.mark.backend("tensorflow")  # runs the JAX check from the TensorFlow pass
def test_same_checks_on_jax_backend():
    """The backend is fixed per process: run the core checks of this file again under KERAS_BACKEND=jax."""
    pytest.importorskip("jax")
    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pathlib.Path(__file__)),
         "-k", "adam_step or sgd_steps or weight_decay or fit_step or config_round_trip"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
