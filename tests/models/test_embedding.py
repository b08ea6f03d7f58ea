"""Embedding head and build_embedding_model."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.models.embedding import (
    HEAD_PATTERN,
    EmbeddingHead,
    build_embedding_model,
    head_lr_multipliers,
)


def tiny_backbone(size=16, channels=6):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(channels, 3, name="tiny_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="tiny")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_head_is_affine_then_optionally_normalised(rng, dtype):
    head = EmbeddingHead(5, dtype=dtype)
    f = rng.normal(size=(4, 7))
    e = ops.convert_to_numpy(head(f.astype(dtype)))
    w, b = ops.convert_to_numpy(head.kernel), ops.convert_to_numpy(head.bias)
    np.testing.assert_allclose(e, f @ w + b, rtol=1e-12 if e.dtype == np.float64 else 1e-5)  # JAX: x64 off
    assert np.all(b == 0)
    normed = EmbeddingHead(5, l2_normalize=True, dtype=dtype)
    normed.build((None, 7))
    normed.kernel.assign(w)
    out = ops.convert_to_numpy(normed(f.astype(dtype)))
    np.testing.assert_allclose(out, (f @ w) / np.linalg.norm(f @ w, axis=1, keepdims=True), rtol=1e-5)


def test_glorot_uniform_init_range(rng):
    head = EmbeddingHead(512)
    head.build((None, 1024))
    kernel = ops.convert_to_numpy(head.kernel)
    limit = np.sqrt(6.0 / (1024 + 512))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.01 * limit


def test_zero_features_l2_normalised_stay_finite():
    head = EmbeddingHead(4, l2_normalize=True)
    out = ops.convert_to_numpy(head(np.zeros((2, 3), "float32")))
    assert np.all(out == 0.0)


def test_head_config_and_errors():
    head = EmbeddingHead(64, l2_normalize=True)
    clone = EmbeddingHead.from_config(head.get_config())
    assert (clone.embedding_dim, clone.l2_normalize, clone.name) == (64, True, "embedding_head")
    with pytest.raises(ValueError, match="embedding_dim"):
        EmbeddingHead(0)
    with pytest.raises(ValueError, match="pooled features"):
        EmbeddingHead(8).build((None, 4, 4, 3))


def test_build_embedding_model_googlenet():
    model = build_embedding_model("googlenet_caffe", embedding_dim=512)
    assert model.input_shape == (None, 227, 227, 3) and model.output_shape == (None, 512)
    head_paths = [v.path for v in model.trainable_variables if v.path.startswith("embedding_head/")]
    assert head_paths == ["embedding_head/kernel", "embedding_head/bias"]
    assert head_lr_multipliers() == {HEAD_PATTERN: 10.0}
    assert model.get_layer("googlenet_caffe").count_params() == 5_973_552


def test_build_embedding_model_from_keras_model_and_save(tmp_path, rng):
    model = build_embedding_model(tiny_backbone(), embedding_dim=8, l2_normalize=True)
    x = rng.normal(size=(3, 16, 16, 3)).astype("float32")
    y = ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(ops.convert_to_numpy(again(x)), y, rtol=1e-5, atol=1e-6)


def test_build_embedding_model_errors():
    with pytest.raises(ValueError, match="pooled features"):
        inputs = keras.Input((8, 8, 3))
        build_embedding_model(keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)))
    with pytest.raises(ValueError, match="weights/backbone kwargs"):
        build_embedding_model(tiny_backbone(), weights="imagenet")
