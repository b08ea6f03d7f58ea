"""LRN and Caffe ceil-mode max pooling vs loops written from the definitions (float64 numpy)."""

import math

import numpy as np
import pytest
from keras import ops

from symm_keras.models.googlenet_layers import (
    CaffeMaxPooling2D,
    LocalResponseNormalization,
    caffe_pool_output_size,
)


def lrn_caffe_oracle(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe LRN ACROSS_CHANNELS: b_c = a_c / (k + alpha/n * sum_{window} a^2)^beta."""
    out = np.zeros_like(x, dtype=np.float64)
    channels = x.shape[-1]
    half = (local_size - 1) // 2
    for idx in np.ndindex(x.shape[:-1]):
        for c in range(channels):
            lo, hi = max(0, c - half), min(channels - 1, c + half)
            total = sum(float(x[idx + (j,)]) ** 2 for j in range(lo, hi + 1))
            out[idx + (c,)] = x[idx + (c,)] / (k + alpha / local_size * total) ** beta
    return out


def caffe_max_pool_oracle(x, k, s, p=0):
    """Caffe pooling_layer.cpp: ceil output size, windows clipped to the (padded) input."""
    n, h, w, c = x.shape
    oh, ow = caffe_pool_output_size(h, k, s, p), caffe_pool_output_size(w, k, s, p)
    out = np.full((n, oh, ow, c), -np.inf)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h), min(ws + k, w)
            hs, ws = max(hs, 0), max(ws, 0)
            out[:, i, j, :] = x[:, hs:he, ws:we, :].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lrn_matches_caffe_definition(rng, dtype):
    x = rng.normal(size=(2, 3, 3, 9)) * 30.0
    layer = LocalResponseNormalization.from_caffe(local_size=5, alpha=1e-4, beta=0.75, k=1.0, dtype=dtype)
    got = ops.convert_to_numpy(layer(x.astype(dtype)))
    tol = 1e-12 if got.dtype == np.float64 else 1e-5  # JAX without x64 computes float64 layers in float32
    np.testing.assert_allclose(got, lrn_caffe_oracle(x), rtol=tol, atol=tol)


def test_lrn_large_alpha_golden():
    # one channel, value 2: 2 / (1 + 0.5 * 4) ** 1 = 2/3; radius clipped at the borders
    layer = LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=0.5, beta=1.0)
    x = np.array([[2.0, 0.0, 0.0]], dtype="float32")
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), [[2.0 / 3.0, 0.0, 0.0]], rtol=1e-6)
    x = np.array([[1.0, 1.0, 1.0]], dtype="float32")  # centre sees 3 squares, edges 2
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), [[1 / 2.0, 1 / 2.5, 1 / 2.0]], rtol=1e-6)


def test_lrn_zero_input_and_config_round_trip():
    layer = LocalResponseNormalization(depth_radius=5, alpha=1e-4)
    y = ops.convert_to_numpy(layer(np.zeros((1, 2, 2, 16), "float32")))
    assert np.all(y == 0.0)
    clone = LocalResponseNormalization.from_config(layer.get_config())
    assert (clone.depth_radius, clone.alpha, clone.beta, clone.bias) == (5, 1e-4, 0.75, 1.0)


def test_lrn_bad_arguments():
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)
    with pytest.raises(ValueError, match="bias"):
        LocalResponseNormalization(bias=0.0)
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNormalization.from_caffe(local_size=4)


@pytest.mark.parametrize("size,expected", [(112, 56), (114, 57), (57, 28), (56, 28), (28, 14), (14, 7)])
def test_caffe_pool_output_size(size, expected):
    assert caffe_pool_output_size(size, 3, 2) == expected
    assert expected == math.ceil((size - 3) / 2) + 1


@pytest.mark.parametrize("size,k,s,p", [(9, 3, 2, 0), (10, 3, 2, 0), (7, 2, 2, 0), (8, 3, 2, 1), (6, 3, 1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_caffe_max_pool_matches_oracle(rng, size, k, s, p, dtype):
    x = rng.normal(size=(2, size, size + 1, 3))  # negative values: padding must not win
    layer = CaffeMaxPooling2D(k, s, padding=p, dtype=dtype)
    got = ops.convert_to_numpy(layer(x.astype(dtype)))
    want = caffe_max_pool_oracle(x, k, s, p)
    assert got.shape == want.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_caffe_max_pool_needs_static_size():
    with pytest.raises(ValueError, match="static spatial size"):
        CaffeMaxPooling2D(3, 2).compute_output_shape((None, None, None, 4))
