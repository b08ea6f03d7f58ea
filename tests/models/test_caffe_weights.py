"""BVLC Caffe GoogLeNet numpy exports (.npz and the Symm/HDML .mat layout) → googlenet_caffe()."""

import keras
import numpy as np
import pytest
import scipy.io
from keras import ops

from symm_keras.models.caffe_weights import (
    load_caffe_googlenet_weights,
    read_caffe_googlenet_weights,
    save_caffe_googlenet_npz,
)
from symm_keras.models.googlenet_caffe import caffe_conv_shapes, googlenet_caffe
from symm_keras.models.registry import build_backbone


def caffe_arrays(rng, drop=()):
    arrays = {}
    for layer, shape in caffe_conv_shapes().items():
        if layer in drop:
            continue
        arrays[f"{layer}/weights"] = (rng.normal(size=shape) * 0.05).astype("float32")
        arrays[f"{layer}/biases"] = (rng.normal(size=shape[:1]) * 0.05).astype("float32")
    arrays["loss3/classifier/weights"] = np.zeros((1000, 1024), "float32")  # ignored
    return arrays


@pytest.fixture(scope="module")
def model():
    return googlenet_caffe(64)


def test_real_blob_shapes():
    shapes = caffe_conv_shapes()
    assert len(shapes) == 57
    assert shapes["conv1/7x7_s2"] == (64, 3, 7, 7)
    assert shapes["inception_3a/5x5"] == (32, 16, 5, 5)
    assert shapes["inception_4a/1x1"] == (192, 480, 1, 1)
    assert shapes["inception_5b/pool_proj"] == (128, 832, 1, 1)


def test_npz_round_trip_and_conv1_values(tmp_path, rng, model):
    arrays = caffe_arrays(rng)
    np.savez(tmp_path / "bvlc_googlenet.npz", **arrays)
    assert load_caffe_googlenet_weights(model, tmp_path / "bvlc_googlenet.npz") == 57
    # conv1/7x7_s2 (pad 3, stride 2) + ReLU computed from the Caffe (out, in, kh, kw) blob in numpy
    stem = keras.Model(model.input, model.get_layer("conv1_7x7_s2_relu").output)
    x = rng.normal(size=(1, 64, 64, 3))
    got = ops.convert_to_numpy(stem(x.astype("float32")))
    w, b = arrays["conv1/7x7_s2/weights"].astype("float64"), arrays["conv1/7x7_s2/biases"]
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
    want = np.zeros((32, 32, 64))
    for i in range(32):
        for j in range(32):
            patch = padded[0, 2 * i : 2 * i + 7, 2 * j : 2 * j + 7, :]  # (kh, kw, in)
            want[i, j] = np.einsum("hwc,ochw->o", patch, w) + b
    np.testing.assert_allclose(got[0], np.maximum(want, 0.0), rtol=1e-4, atol=1e-4)
    # export → re-read gives the same blobs
    save_caffe_googlenet_npz(model, tmp_path / "again.npz")
    with np.load(tmp_path / "again.npz") as again:
        for key in ("inception_4d/3x3/weights", "inception_5a/pool_proj/biases"):
            np.testing.assert_allclose(again[key], arrays[key])


def test_mat_layout_of_the_symm_code(tmp_path, rng, model):
    arrays = caffe_arrays(rng)
    mat = {}
    for layer in caffe_conv_shapes():
        mat[layer] = arrays[f"{layer}/weights"]
        mat[f"{layer}_bias"] = arrays[f"{layer}/biases"].reshape(1, -1)  # savemat stores 1-D as (1, n)
    scipy.io.savemat(tmp_path / "tf_ckpt_from_caffe.mat", mat)
    load_caffe_googlenet_weights(model, tmp_path / "tf_ckpt_from_caffe.mat")
    kernel = ops.convert_to_numpy(model.get_layer("inception_3b_5x5").kernel)
    np.testing.assert_array_equal(kernel, np.transpose(arrays["inception_3b/5x5/weights"], (2, 3, 1, 0)))


def test_keras_layout_accepted(tmp_path, rng):
    arrays = caffe_arrays(rng)
    arrays["conv2/3x3/weights"] = np.transpose(arrays["conv2/3x3/weights"], (2, 3, 1, 0))
    np.savez(tmp_path / "mixed.npz", **arrays)
    weights = read_caffe_googlenet_weights(tmp_path / "mixed.npz")
    assert weights["conv2/3x3"][0].shape == (3, 3, 64, 192)


def test_missing_layer_and_bad_shape(tmp_path, rng):
    np.savez(tmp_path / "partial.npz", **caffe_arrays(rng, drop=("inception_4c/3x3",)))
    with pytest.raises(ValueError, match="1 GoogLeNet layer.*missing.*inception_4c/3x3"):
        read_caffe_googlenet_weights(tmp_path / "partial.npz")
    arrays = caffe_arrays(rng)
    arrays["inception_3a/5x5/weights"] = np.zeros((32, 16, 3, 3), "float32")
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="inception_3a/5x5"):
        read_caffe_googlenet_weights(tmp_path / "bad.npz")


def test_missing_file_and_format(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="bvlc_googlenet.caffemodel"):
        read_caffe_googlenet_weights(tmp_path / "none.npz")
    (tmp_path / "w.pkl").write_bytes(b"\x00")
    with pytest.raises(ValueError, match=".caffemodel, .npz or .mat"):
        read_caffe_googlenet_weights(tmp_path / "w.pkl")
    monkeypatch.setenv("SYMM_KERAS_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data_prep.weights --model googlenet_caffe"):
        build_backbone("googlenet_caffe", weights="imagenet", input_size=64)


def test_imagenet_from_weights_dir(tmp_path, rng, monkeypatch):
    arrays = caffe_arrays(rng)
    np.savez(tmp_path / "bvlc_googlenet.npz", **arrays)
    monkeypatch.setenv("SYMM_KERAS_WEIGHTS", str(tmp_path))
    backbone = build_backbone("googlenet_caffe", weights="imagenet", input_size=64)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(backbone.get_layer("inception_5b_1x1").bias), arrays["inception_5b/1x1/biases"]
    )
