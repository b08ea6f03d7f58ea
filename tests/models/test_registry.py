"""Backbone registry: names, preprocessing modes, keras.applications weights (offline, local file, real)."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.data import preprocessing
from symm_keras.models import registry
from symm_keras.models.registry import (
    available_backbones,
    backbone_preprocessing,
    build_backbone,
    default_input_size,
)


def test_names_and_preprocessing():
    assert available_backbones()[:2] == ["googlenet_caffe", "inception_v1"]
    assert backbone_preprocessing("googlenet_caffe") == "caffe"
    assert backbone_preprocessing("inception_v1") == "inception"
    assert backbone_preprocessing("resnet50") == "caffe"
    assert backbone_preprocessing("InceptionV3") == "inception"
    assert backbone_preprocessing("mobilenet_v2") == "inception"
    assert backbone_preprocessing("densenet121") == "torch"
    assert backbone_preprocessing("EfficientNetB0") == "none"
    assert default_input_size("googlenet_caffe") == 227 and default_input_size("inception_v3") == 299


def test_preprocessing_modes_are_known_to_the_data_pipeline():
    for name in available_backbones():
        assert backbone_preprocessing(name) in preprocessing.MODES, name


def test_every_keras_application_constructor_exists():
    for name, (constructor, _, _) in registry.KERAS_APPLICATIONS.items():
        assert hasattr(keras.applications, constructor), (name, constructor)


def test_unknown_name_and_bad_weights():
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'.*googlenet_caffe"):
        build_backbone("alexnet")
    with pytest.raises(TypeError, match="weights must be None, 'imagenet' or a file path"):
        build_backbone("mobilenet_v2", weights=3)


def test_keras_application_features():
    model = build_backbone("mobilenet_v2", input_size=96, alpha=0.35)
    assert model.output_shape == (None, 1280)
    assert build_backbone("mobilenet_v2", alpha=0.35).input_shape == (None, 224, 224, 3)  # None → default size
    model = build_backbone("MobileNetV2", input_size=96, alpha=0.35, pooling=None)
    assert model.output_shape == (None, 3, 3, 1280)


def test_imagenet_offline_is_a_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="(?s)could not download the ImageNet weights of mobilenet_v2.*No internet"):
        build_backbone("mobilenet_v2", weights="imagenet", input_size=96, alpha=0.35)


def test_missing_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_backbone("mobilenet_v2", weights=tmp_path / "nope.weights.h5", input_size=96, alpha=0.35)


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_local_weights_file_round_trip(tmp_path, rng):
    source = build_backbone("mobilenet_v2", input_size=96, alpha=0.35)
    source.save_weights(tmp_path / "mnv2.weights.h5")
    loaded = build_backbone("mobilenet_v2", weights=tmp_path / "mnv2.weights.h5", input_size=96, alpha=0.35)
    x = rng.uniform(-1, 1, size=(2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(source(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.realdata
def test_real_mobilenet_v2_imagenet_weights(mobilenet_weights_path, rng):
    """The shared ImageNet MobileNetV2 file loads by path and gives the documented backbone's features."""
    model = build_backbone("mobilenet_v2", weights=mobilenet_weights_path, input_size=224)
    reference = keras.applications.MobileNetV2(alpha=1.0, include_top=False, weights=None, input_shape=(224, 224, 3))
    reference.load_weights(mobilenet_weights_path)
    x = keras.applications.mobilenet_v2.preprocess_input(rng.uniform(0, 255, size=(2, 224, 224, 3)).astype("float32"))
    features = ops.convert_to_numpy(model(x))
    want = ops.convert_to_numpy(ops.mean(reference(x), axis=(1, 2)))
    np.testing.assert_allclose(features, want, rtol=1e-4, atol=1e-5)
    assert features.shape == (2, 1280) and np.all(features >= 0) and features.std() > 0
    # pretrained, not fresh: a fresh batch norm has moving_variance == 1 everywhere
    assert not np.allclose(ops.convert_to_numpy(model.get_layer("bn_Conv1").moving_variance), 1.0)
