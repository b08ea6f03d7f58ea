"""Decoding, resize/crop/flip and the normalisation modes, against numpy oracles."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from symm_keras import data


def _png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _gradient(height=40, width=60):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4 % 256, y * 6 % 256, (x + y) * 2 % 256], axis=-1).astype(np.uint8)


def test_greyscale_becomes_three_equal_channels():
    grey = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(30, 20)
    image = data.ImagePreprocessing.decode(_png_bytes(grey)).numpy()
    assert image.shape == (30, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], grey)


def test_test_transform_is_resize_then_centre_crop():
    pixels = _gradient()
    prep = data.ImagePreprocessing(crop_size=20, resize=32, mode="none")
    out = prep.test_image(_png_bytes(pixels)).numpy()
    resized = tf.image.resize(pixels, (32, 32), method="bilinear").numpy()
    np.testing.assert_allclose(out, resized[6:26, 6:26], atol=1e-4)


@pytest.mark.parametrize("mode", ["caffe", "inception", "tf", "torch", "none"])
def test_normalisation_modes_match_formulas(mode):
    rgb = np.array([[[10.0, 100.0, 250.0]]], dtype=np.float32)
    out = data.ImagePreprocessing(mode=mode).normalize(rgb).numpy()[0, 0]
    expected = {
        "caffe": [250 - 103.939, 100 - 116.779, 10 - 123.68],
        "inception": [10 / 127.5 - 1, 100 / 127.5 - 1, 250 / 127.5 - 1],
        "tf": [10 / 127.5 - 1, 100 / 127.5 - 1, 250 / 127.5 - 1],
        "torch": [(10 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (250 / 255 - 0.406) / 0.225],
        "none": [10, 100, 250],
    }[mode]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_train_crop_is_a_window_of_the_resized_image_and_deterministic():
    pixels = _gradient()
    encoded = _png_bytes(pixels)
    prep = data.ImagePreprocessing(crop_size=24, resize=32, mode="none")
    resized = tf.image.resize(pixels, (32, 32), method="bilinear").numpy()
    flips = set()
    for element in range(12):
        seed = tf.constant([7, element], tf.int64)
        out = prep.train_image(encoded, seed).numpy()
        np.testing.assert_array_equal(out, prep.train_image(encoded, seed).numpy())
        windows = [
            (flip, y, x)
            for flip in (False, True)
            for y in range(9)
            for x in range(9)
            if np.allclose((resized[:, ::-1] if flip else resized)[y : y + 24, x : x + 24], out, atol=1e-4)
        ]
        assert windows, "train crop is not a (possibly flipped) window of the resized image"
        flips.add(windows[0][0])
    assert flips == {False, True}
    other = prep.train_image(encoded, tf.constant([8, 0], tf.int64)).numpy()
    assert out.shape == other.shape == (24, 24, 3)


def test_bbox_crop_uses_the_box():
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[10:30, 20:50] = 200
    prep = data.ImagePreprocessing(crop_size=8, resize=8, mode="none", bbox_crop=True)
    out = prep.test_image(_png_bytes(pixels), bbox=tf.constant([20.0, 10.0, 30.0, 20.0])).numpy()
    np.testing.assert_allclose(out, 200.0, atol=1e-3)
    with pytest.raises(ValueError, match="bounding boxes"):
        prep.test_image(_png_bytes(pixels))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        data.ImagePreprocessing(mode="bgr")
    with pytest.raises(ValueError, match="resize must be an int >= crop_size"):
        data.ImagePreprocessing(crop_size=227, resize=200)
    with pytest.raises(ValueError, match="crop_size must be a positive int"):
        data.ImagePreprocessing(crop_size=0)
    assert data.ImagePreprocessing(**data.ImagePreprocessing(mode="torch").get_config()).mode == "torch"
