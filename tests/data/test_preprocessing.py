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


def _bilinear_oracle(image, out_h, out_w):
    """Half-pixel-centre bilinear resize written out in float64 loops (the papers' 256×256 resize)."""
    image = image.astype(np.float64)
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w, image.shape[2]))
    for i in range(out_h):
        y = (i + 0.5) * in_h / out_h - 0.5
        y0 = int(np.floor(y))
        wy = y - y0
        y_lo, y_hi = min(max(y0, 0), in_h - 1), min(max(y0 + 1, 0), in_h - 1)
        for j in range(out_w):
            x = (j + 0.5) * in_w / out_w - 0.5
            x0 = int(np.floor(x))
            wx = x - x0
            x_lo, x_hi = min(max(x0, 0), in_w - 1), min(max(x0 + 1, 0), in_w - 1)
            top = image[y_lo, x_lo] * (1 - wx) + image[y_lo, x_hi] * wx
            bottom = image[y_hi, x_lo] * (1 - wx) + image[y_hi, x_hi] * wx
            out[i, j] = top * (1 - wy) + bottom * wy
    return out


@pytest.mark.parametrize("shape", [(40, 60), (70, 30)])  # downscale one side, upscale the other
def test_test_transform_matches_a_float64_oracle_with_caffe_normalisation(shape):
    pixels = _gradient(*shape)
    prep = data.ImagePreprocessing(crop_size=40, resize=48, mode="caffe")
    out = prep.test_image(_png_bytes(pixels)).numpy()
    expected = _bilinear_oracle(pixels, 48, 48)[4:44, 4:44][..., ::-1] - np.array(CAFFE_MEAN)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=2e-3)


CAFFE_MEAN = (103.939, 116.779, 123.68)


# --------------------------------------------------------------------------- the two Symm recipes' pipelines
from symm_keras.data.preprocessing import SYMM_RGB_MEAN, SymmOfficialPreprocessing, make_preprocessing  # noqa: E402


def _area_oracle(image, out_h, out_w):
    """Exact pixel-area averaging (OpenCV ``INTER_AREA`` when shrinking) in float64."""
    image = image.astype(np.float64)
    in_h, in_w = image.shape[:2]

    def weights(n_in, n_out):
        scale = n_in / n_out
        w = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = i * scale, (i + 1) * scale
            for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
                w[i, j] = max(0.0, min(hi, j + 1) - max(lo, j))
        return w / scale

    wy, wx = weights(in_h, out_h), weights(in_w, out_w)
    return np.stack([wy @ image[..., c] @ wx.T for c in range(image.shape[2])], axis=-1)


def _real_image(cub_sample_dir):
    path = sorted((cub_sample_dir / "images").glob("*/*.jpg"))[0]
    encoded = path.read_bytes()
    return encoded, tf.io.decode_jpeg(encoded, channels=3).numpy()


def test_official_test_transform_of_a_real_image_matches_numpy(cub_sample_dir):
    """test.py: the whole image area-resized to the crop size, then RGB mean subtraction."""
    encoded, pixels = _real_image(cub_sample_dir)
    prep = SymmOfficialPreprocessing(crop_size=96)
    out = prep.test_image(encoded).numpy()
    expected = _area_oracle(pixels, 96, 96) - np.array(SYMM_RGB_MEAN)
    assert out.shape == (96, 96, 3)
    np.testing.assert_allclose(out, expected, atol=2e-3)


def test_official_train_transform_of_a_real_image_matches_numpy(cub_sample_dir):
    """data_load.py load_image: border m ∈ [1, ⌊0.05·min side⌋), area resize, crop offset ∈ [0, R − c), flip."""
    encoded, pixels = _real_image(cub_sample_dir)
    crop, resize = 96, int(96 * 1.125)
    prep = SymmOfficialPreprocessing(crop_size=crop)
    assert prep.resize == resize == 108
    h, w = pixels.shape[:2]
    high = int(min(h, w) * 0.05)
    candidates = {m: _area_oracle(pixels[m : h - m, m : w - m], resize, resize) - np.array(SYMM_RGB_MEAN)
                  for m in range(1, high)}  # fmt: skip
    seen = {"margin": set(), "offset": set(), "flip": set()}
    for element in range(12):
        out = prep.train_image(encoded, tf.constant([3, element], tf.int64)).numpy()
        found = [
            (m, flip, y, x)
            for m, resized in candidates.items()
            for flip in (False, True)
            for y in range(resize - crop)
            for x in range(resize - crop)
            if abs(out[0, 0, 0] - (resized[y, x + crop - 1, 0] if flip else resized[y, x, 0])) < 5e-3
            and np.allclose((resized[y : y + crop, x : x + crop][:, ::-1] if flip else
                             resized[y : y + crop, x : x + crop]), out, atol=2e-3)  # fmt: skip
        ]
        assert found, f"element {element}: not a border-cropped, area-resized window of the image"
        m, flip, y, x = found[0]
        seen["margin"].add(m), seen["flip"].add(flip), seen["offset"].update((y, x))
    assert seen["flip"] == {False, True} and len(seen["margin"]) > 1
    assert max(seen["offset"]) < resize - crop  # numpy randint(0, R − c): offset R − c is never drawn


def test_paper_pipeline_of_a_real_image_matches_numpy(cub_sample_dir):
    """Paper: 256 × 256 bilinear resize, centre 227 crop at test (Caffe BGR mean)."""
    encoded, pixels = _real_image(cub_sample_dir)
    prep = make_preprocessing("paper", crop_size=227, resize=256, mode="caffe")
    out = prep.test_image(encoded).numpy()
    expected = _bilinear_oracle(pixels, 256, 256)[14:241, 14:241][..., ::-1] - np.array(CAFFE_MEAN)
    np.testing.assert_allclose(out, expected, atol=2e-3)


def test_official_box_crop_is_cooking_cars():
    """cooking_CARS.py: img[y1:y2, x1:x2] with MATLAB corners; stored box (x1−1, y1−1, x2−x1+1, y2−y1+1)."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    x1, y1, x2, y2 = 11, 6, 30, 25  # MATLAB, 1-based inclusive
    pixels[y1:y2, x1:x2] = 200  # the cooked crop, exactly
    stored = tf.constant([x1 - 1.0, y1 - 1.0, x2 - x1 + 1.0, y2 - y1 + 1.0])
    cropped = SymmOfficialPreprocessing.crop_to_box(tf.constant(pixels), stored).numpy()
    np.testing.assert_array_equal(cropped, pixels[y1:y2, x1:x2])


def test_make_preprocessing_names_the_pipelines():
    assert type(make_preprocessing("symm_official")) is SymmOfficialPreprocessing
    assert make_preprocessing("symm_official").get_config()["resize"] == 255
    with pytest.raises(ValueError, match="pipeline must be one of"):
        make_preprocessing("imagenet")
    with pytest.raises(ValueError, match="resize must be > crop_size"):
        SymmOfficialPreprocessing(crop_size=32, resize=32)
