"""Coupled L2 decay: the term equals its formula, its gradient is coef·w, and the optimizer equals loss + term."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.optimizers import (
    batchnorm_variables,
    coupled_l2_penalty,
    decayed_variables,
    with_coupled_decay,
)
from symm_keras.models import with_lr_multipliers


def _toy_model(seed=0):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(5, name="backbone_dense", kernel_initializer=keras.initializers.GlorotUniform(seed))(inputs)
    h = keras.layers.BatchNormalization(name="backbone_bn")(h)
    out = keras.layers.Dense(3, name="embedding_head",
                             kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
                             bias_initializer=keras.initializers.RandomNormal(seed=seed + 2))(h)  # fmt: skip
    return keras.Model(inputs, out)


def test_term_equals_its_formula_over_non_batchnorm_variables():
    model = _toy_model()
    decayed = decayed_variables(model)
    names = sorted(v.path for v in decayed)
    assert names == ["backbone_dense/bias", "backbone_dense/kernel", "embedding_head/bias", "embedding_head/kernel"]
    assert {v.path for v in batchnorm_variables(model)} >= {"backbone_bn/gamma", "backbone_bn/beta"}
    expected = 5e-3 * sum(0.5 * np.sum(np.square(ops.convert_to_numpy(v).astype(np.float64))) for v in decayed)
    np.testing.assert_allclose(float(ops.convert_to_numpy(coupled_l2_penalty(decayed, 5e-3))), expected, rtol=1e-6)


def _value_and_grads(loss_fn, variables):
    """``loss_fn()`` and its gradients w.r.t. ``variables`` on the active backend (TF tape or ``jax.grad``)."""
    if keras.backend.backend() == "jax":
        import jax

        from keras.src.backend.common.stateless_scope import StatelessScope

        def pure(values):
            with StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        return jax.value_and_grad(pure)([v.value for v in variables])
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_fn()
    return loss, tape.gradient(loss, variables)


def test_gradient_of_the_term_is_coef_times_w():
    weights = keras.Variable(np.random.default_rng(0).normal(size=(6, 4)).astype("float32"))
    _, (grad,) = _value_and_grads(lambda: coupled_l2_penalty([weights], 5e-4), [weights])
    np.testing.assert_allclose(ops.convert_to_numpy(grad), 5e-4 * ops.convert_to_numpy(weights), rtol=1e-6)


def _train(optimizer_factory, with_penalty, steps=4, coef=5e-3):
    """``steps`` updates of the toy model on MSE (+ the coupled term when ``with_penalty``)."""
    model = _toy_model()
    optimizer = optimizer_factory(model)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    variables = model.trainable_variables

    def loss_fn():
        loss = ops.mean(ops.square(model(x, training=False) - y))
        return loss + coupled_l2_penalty(decayed_variables(model), coef) if with_penalty else loss

    for _ in range(steps):
        optimizer.apply(_value_and_grads(loss_fn, variables)[1], variables)
    return [ops.convert_to_numpy(v) for v in variables]


@pytest.mark.parametrize("base", ["adam", "sgd"])
def test_optimizer_equals_training_on_loss_plus_term(base):
    """``with_coupled_decay`` = the TF1/Caffe objective ``loss + coef·Σ½‖w‖²`` (BN excluded), Adam and SGD+momentum."""
    def make(lr):
        return keras.optimizers.Adam(lr) if base == "adam" else keras.optimizers.SGD(lr, momentum=0.9)

    coupled = _train(lambda m: with_coupled_decay(make(1e-2), 5e-3, model=m), with_penalty=False)
    reference = _train(lambda m: make(1e-2), with_penalty=True)
    plain = _train(lambda m: make(1e-2), with_penalty=False)
    for a, b in zip(coupled, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert max(np.max(np.abs(a - b)) for a, b in zip(coupled, plain)) > 1e-6  # the decay did something


def test_gradient_multiplier_scales_the_summed_gradient_and_adam_cancels_it():
    """Released code: head gradient ×10 after adding the decay; under Adam that is (nearly) the 1× update."""
    head = {"^embedding_head/": 10.0}
    sgd_times_10 = _train(lambda m: with_coupled_decay(keras.optimizers.SGD(1e-2), 5e-3, m, head), False, steps=1)
    sgd = _train(lambda m: with_coupled_decay(keras.optimizers.SGD(1e-2), 5e-3, m), False, steps=1)
    start = [ops.convert_to_numpy(v) for v in _toy_model().trainable_variables]
    paths = [v.path for v in _toy_model().trainable_variables]
    for path, a, b, s in zip(paths, sgd_times_10, sgd, start):
        factor = 10.0 if path.startswith("embedding_head/") else 1.0
        np.testing.assert_allclose(a - s, factor * (b - s), rtol=1e-4, atol=1e-7)
    adam_times_10 = _train(lambda m: with_coupled_decay(keras.optimizers.Adam(1e-3), 5e-3, m, head), False)
    adam = _train(lambda m: with_coupled_decay(keras.optimizers.Adam(1e-3), 5e-3, m), False)
    for path, a, b, s in zip(paths, adam_times_10, adam, start):
        if path.startswith("embedding_head/"):  # (the backbone bias before BN has a ~0 gradient: Adam scales noise)
            np.testing.assert_allclose(a - s, b - s, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_model_fit_applies_the_decay_to_non_batchnorm_variables(momentum):
    """Through ``model.fit`` (TF and JAX trainers): a zero loss leaves only the decay, ``w ← w − lr·coef·w``."""
    model = _toy_model()
    start = {v.path: ops.convert_to_numpy(v) for v in model.trainable_variables}
    optimizer = with_coupled_decay(keras.optimizers.SGD(0.5, momentum=momentum), 0.1, model=model)
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: 0.0 * ops.sum(y_pred))
    model.fit(np.ones((4, 4), "float32"), np.zeros((4, 3), "float32"), batch_size=4, epochs=1, verbose=0)
    for v in model.trainable_variables:
        expected = start[v.path] * (1 - 0.5 * 0.1) if "bn" not in v.path else start[v.path]
        np.testing.assert_allclose(ops.convert_to_numpy(v), expected, rtol=1e-6, atol=1e-7)


def test_combines_with_lr_multipliers_and_round_trips():
    base = with_lr_multipliers(keras.optimizers.SGD(0.1, momentum=0.9), {"^embedding_head/": 10.0})
    optimizer = with_coupled_decay(base, 5e-4)
    config = optimizer.get_config()
    assert config["coupled_weight_decay"] == 5e-4 and config["lr_multipliers"] == {"^embedding_head/": 10.0}
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(clone) is type(optimizer) and clone.get_config() == config


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="not both"):
        with_coupled_decay(keras.optimizers.SGD(0.1, weight_decay=1e-4), 5e-4)
    with pytest.raises(ValueError, match="coupled_weight_decay must be finite"):
        with_coupled_decay(keras.optimizers.SGD(0.1), -1.0)
    with pytest.raises(TypeError, match="Keras optimizer"):
        with_coupled_decay(42, 5e-4)
