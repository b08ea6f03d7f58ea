"""The contract every P×K-batch loss of ``symm_keras.losses`` must keep.

Loss classes are discovered (see ``discovery.py``), so each new loss module is
tested here without listing it. Each class is built with its defaults.
"""

import keras
import numpy as np
import pytest
from keras import ops

from tests.losses.autodiff import computed_tolerance, float64_enabled, to_numpy, value_and_gradient
from tests.losses.discovery import discover_losses, images_per_class
from tests.losses.symm_oracles import used_rows
from tests.losses.toy_data import (
    clustered_embeddings,
    pk_batches,
    pk_labels,
    recall_at_1,
    toy_retrieval_problem,
)

LOSS_CLASSES = discover_losses("pk")
#: Losses built for K images per class; any-K losses need no layout rule.
FIXED_K_LOSS_CLASSES = [cls for cls in LOSS_CLASSES if getattr(cls, "images_per_class", None)]


@pytest.fixture(params=LOSS_CLASSES, ids=lambda cls: cls.__name__)
def loss_class(request):
    return request.param


def valid_batch(rng, loss_class, num_classes=4, dim=6, dtype="float32"):
    k = images_per_class(loss_class)
    labels = pk_labels(rng, num_classes, k)
    x = clustered_embeddings(rng, labels, dim, spread=0.5).astype(dtype)
    return labels.astype("int32"), x


# JAX runs eager code op by op (slow); one traced program per call is much faster.
TRACE_GRADIENTS = keras.backend.backend() == "jax"


def loss_value_and_grad(loss, labels, x, dtype="float32"):
    value, grad = value_and_gradient(
        lambda e: loss(labels, e), x, dtype=dtype, compiled=TRACE_GRADIENTS
    )
    return float(value), grad


def assert_finite(value, grad):
    assert np.isfinite(value), value
    assert np.all(np.isfinite(grad)), grad


def test_discovers_the_baselines():
    names = {cls.__name__ for cls in LOSS_CLASSES}
    expected = {
        "ContrastiveLoss",
        "TripletLoss",
        "SemiHardTripletLoss",
        "LiftedStructureLoss",
        "NPairLoss",
        "AngularLoss",
    }
    assert expected <= names


def test_config_round_trip(loss_class, rng):
    loss = loss_class()
    config = loss.get_config()
    clone = loss_class.from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is loss_class
    assert restored.get_config() == config
    labels, x = valid_batch(rng, loss_class)
    np.testing.assert_allclose(to_numpy(restored(labels, x)), to_numpy(loss(labels, x)), rtol=1e-6)


def test_saved_and_loaded_in_keras_model(loss_class, rng, tmp_path):
    labels, x = valid_batch(rng, loss_class)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(5)])
    model.compile(optimizer="adam", loss=loss_class())
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is loss_class
    assert loaded.loss.get_config() == model.loss.get_config()
    expected = to_numpy(model.loss(labels, model(x)))
    np.testing.assert_allclose(to_numpy(loaded.loss(labels, loaded(x))), expected, rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_float32_math_under_mixed_precision(loss_class, rng, policy):
    labels, x = valid_batch(rng, loss_class)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(5)])
        embeddings = model(x)
        assert keras.backend.standardize_dtype(embeddings.dtype) != "float32"
        value = loss_class()(labels, embeddings)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        reference = loss_class()(labels, ops.cast(embeddings, "float32"))
    finally:
        keras.config.set_dtype_policy(previous)
    assert np.isfinite(to_numpy(value))
    np.testing.assert_allclose(to_numpy(value), to_numpy(reference), rtol=1e-6, atol=1e-7)


def test_bfloat16_embeddings(loss_class, rng):
    labels, x = valid_batch(rng, loss_class)
    x16 = ops.cast(x, "bfloat16")
    value = loss_class()(labels, x16)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    reference = loss_class()(labels, ops.cast(x16, "float32"))
    np.testing.assert_allclose(to_numpy(value), to_numpy(reference), rtol=1e-6, atol=1e-7)


def test_no_positive_pair(loss_class, rng):
    labels = np.arange(6, dtype="int32")
    x = rng.normal(size=(6, 5)).astype("float32")
    loss = loss_class()
    value, grad = loss_value_and_grad(loss, labels, x)
    assert_finite(value, grad)
    if getattr(loss_class, "zero_without_positives", True):
        assert value == 0.0
        assert np.all(grad == 0.0)


def test_single_class(loss_class, rng):
    k = getattr(loss_class, "images_per_class", None) or 4
    labels = np.zeros(k, dtype="int32")
    x = rng.normal(size=(k, 5)).astype("float32")
    assert_finite(*loss_value_and_grad(loss_class(), labels, x))


def test_zero_vectors(loss_class, rng):
    labels, x = valid_batch(rng, loss_class)
    assert_finite(*loss_value_and_grad(loss_class(), labels, np.zeros_like(x)))


def test_coincident_points(loss_class, rng):
    labels, x = valid_batch(rng, loss_class)
    x[:] = x[0]
    assert_finite(*loss_value_and_grad(loss_class(), labels, x))


def test_norms_of_1e4(loss_class, rng):
    labels, x = valid_batch(rng, loss_class)
    x = 1e4 * x / np.linalg.norm(x, axis=1, keepdims=True)
    assert_finite(*loss_value_and_grad(loss_class(), labels, x.astype("float32")))


def test_finite_gradients_random_batches(loss_class, rng):
    for num_classes, dim in [(2, 3), (8, 16)]:
        labels, x = valid_batch(rng, loss_class, num_classes=num_classes, dim=dim)
        assert_finite(*loss_value_and_grad(loss_class(), labels, x))
    # Unstructured points: positives are not closer than negatives, so every
    # loss has active terms and a non-zero gradient.
    labels = pk_labels(rng, 8, images_per_class(loss_class)).astype("int32")
    x = (0.3 * rng.normal(size=(len(labels), 16))).astype("float32")
    value, grad = loss_value_and_grad(loss_class(), labels, x)
    assert_finite(value, grad)
    assert np.any(grad != 0.0)


def test_wrong_label_shape_is_a_clear_error(loss_class, rng):
    labels, x = valid_batch(rng, loss_class)
    loss = loss_class()
    with pytest.raises(ValueError, match="y_true"):
        loss(np.stack([labels, labels], axis=1), x)
    with pytest.raises(ValueError, match="labels"):
        loss(labels[:-2], x)
    with pytest.raises(ValueError, match="y_pred"):
        loss(labels, x[:, :, None])


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "traced"])
@pytest.mark.parametrize("loss_class", FIXED_K_LOSS_CLASSES, ids=lambda cls: cls.__name__)
def test_other_batch_layouts_are_defined(loss_class, rng, compiled):
    """A loss built for K images per class computes, for any other layout, its
    value on the first two images of each class seen twice or more (eagerly
    and traced alike)."""
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 4, 4], dtype="int32")  # the traced 4x3 case and more
    x = rng.normal(size=(len(labels), 5)).astype("float32")
    keep = used_rows(labels)
    loss = loss_class()
    value, grad = value_and_gradient(lambda e: loss(labels, e), x, compiled=compiled)
    expected = float(to_numpy(loss(labels[keep], x[keep])))
    assert expected > 0.0
    np.testing.assert_allclose(float(value), expected, rtol=1e-5, atol=1e-6)
    unused = np.setdiff1d(np.arange(len(labels)), keep)
    assert np.all(grad[unused] == 0.0)


def test_finite_difference_gradient_float64(loss_class, rng):
    with float64_enabled():
        labels, x = valid_batch(rng, loss_class, num_classes=3, dim=4, dtype="float64")
        loss = loss_class(dtype="float64")

        def value(e):
            return float(to_numpy(loss_fn(ops.convert_to_tensor(e, dtype="float64"))))

        def loss_fn(e):
            return loss(labels, e)

        if TRACE_GRADIENTS:
            import jax

            loss_fn = jax.jit(loss_fn)
        _, grad = value_and_gradient(loss_fn, x, dtype="float64")
        # (step, rtol, atol) for the precision the backend really computes float64 in
        eps, rtol, atol = computed_tolerance("float64", float32=(1e-3, 2e-2, 2e-3), float64=(1e-6, 1e-4, 1e-6))
        numeric = np.zeros_like(x)
        for index in np.ndindex(*x.shape):
            step = np.zeros_like(x)
            step[index] = eps
            numeric[index] = (value(x + step) - value(x - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=rtol, atol=atol)


# The released code's pooling (``pairs="official"``, the default of the Symm
# N-pair and angular losses) max-pools the positive logit over pairs such as
# a·a' = ‖a‖² cos 2θ, which is as large for an anti-parallel positive pair as
# for a perfect one. It trains from a pretrained backbone (the paper's set-up)
# but not from this toy problem's random start, so the toy fit checks the
# paper's eq. 8 / eq. 10 pooling for them; see docs/losses.md.
TOY_FIT_ARGS = {"SymmNPairLoss": {"pairs": "paper"}, "SymmAngularLoss": {"pairs": "paper"}}


def test_jit_compiled_fit_lowers_loss_and_raises_recall(loss_class):
    rng = np.random.default_rng(1)
    x_train, y_train, x_test, y_test = toy_retrieval_problem(rng)
    k = images_per_class(loss_class)
    x_fit, y_fit = pk_batches(rng, x_train, y_train, 16 // k, steps=30, images_per_class=k)
    probe_x, probe_y = pk_batches(rng, x_train, y_train, 16 // k, steps=1, images_per_class=k)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((x_train.shape[1],)),
            keras.layers.Dense(8),
            keras.layers.UnitNormalization(),
        ]
    )
    loss = loss_class(**TOY_FIT_ARGS.get(loss_class.__name__, {}))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, jit_compile=True)
    loss_before = float(to_numpy(loss(probe_y, model(probe_x))))
    recall_before = recall_at_1(to_numpy(model(x_test)), y_test)
    history = model.fit(x_fit, y_fit, batch_size=16, shuffle=False, epochs=1, verbose=0)
    loss_after = float(to_numpy(loss(probe_y, model(probe_x))))
    recall_after = recall_at_1(to_numpy(model(x_test)), y_test)
    assert np.all(np.isfinite(history.history["loss"]))
    assert loss_after < loss_before
    assert recall_after > recall_before + 0.2, (recall_before, recall_after)
