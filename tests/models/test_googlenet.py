"""Both GoogLeNet forms: shapes at 224/227, Caffe stem sizes, parameter counts, finite gradients."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.models.googlenet_caffe import GOOGLENET_MODULES, caffe_conv_shapes, googlenet_caffe
from symm_keras.models.inception_v1 import inception_v1


@pytest.fixture(scope="module")
def caffe_227():
    return googlenet_caffe(227)


@pytest.fixture(scope="module")
def slim_224():
    return inception_v1(224)


def test_module_table_matches_szegedy_table1():
    # output channels of each inception module (Szegedy et al. 2015, Table 1, column "depth" outputs)
    outputs = [f1 + f3 + f5 + fp for _, _, f1, _, f3, _, f5, fp in GOOGLENET_MODULES]
    assert outputs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]


def test_caffe_form_shapes_227(caffe_227, rng):
    # Caffe (ceil-mode pooling) sizes for 227: conv1 114 -> pool1 57 -> pool2 28 -> pool3 14 -> pool4 7
    sizes = {name: caffe_227.get_layer(name).output.shape[1] for name in
             ("conv1_7x7_s2", "pool1_3x3_s2", "pool2_3x3_s2", "pool3_3x3_s2", "pool4_3x3_s2", "inception_5b_output")}
    assert sizes == {"conv1_7x7_s2": 114, "pool1_3x3_s2": 57, "pool2_3x3_s2": 28,
                     "pool3_3x3_s2": 14, "pool4_3x3_s2": 7, "inception_5b_output": 7}
    y = caffe_227(rng.normal(size=(2, 227, 227, 3)).astype("float32"))
    assert tuple(y.shape) == (2, 1024)
    assert np.all(np.isfinite(ops.convert_to_numpy(y)))


def test_caffe_form_shapes_224_and_feature_map():
    model = googlenet_caffe(224, pooling=None)
    assert model.get_layer("conv1_7x7_s2").output.shape[1] == 112
    assert model.get_layer("pool1_3x3_s2").output.shape[1] == 56
    assert model.output_shape == (None, 7, 7, 1024)


def test_caffe_parameter_count_matches_bvlc(caffe_227):
    # bvlc_googlenet deploy: 6,998,552 parameters including the 1024x1000 classifier (1,025,000)
    assert caffe_227.count_params() + 1024 * 1000 + 1000 == 6_998_552
    for name, (out, cin, kh, kw) in caffe_conv_shapes().items():
        assert tuple(caffe_227.get_layer(name.replace("/", "_")).kernel.shape) == (kh, kw, cin, out)


def test_caffe_form_has_lrn_and_no_batchnorm(caffe_227):
    kinds = {type(layer).__name__ for layer in caffe_227.layers}
    assert "LocalResponseNormalization" in kinds and "BatchNormalization" not in kinds


@pytest.mark.parametrize("size,final", [(224, 7), (227, 8)])
def test_slim_form_shapes(size, final):
    model = inception_v1(size, pooling=None)
    assert model.output_shape == (None, final, final, 1024)
    assert model.get_layer("MaxPool_5a_2x2").output.shape[1] == final


def test_slim_form_layers(slim_224, rng):
    names = {layer.name for layer in slim_224.layers}
    assert {"Conv2d_1a_7x7", "Conv2d_1a_7x7_BatchNorm", "Mixed_5b_Branch_2_Conv2d_0a_3x3",
            "Mixed_5c_Branch_2_Conv2d_0b_3x3", "Mixed_4f"} <= names
    bn = slim_224.get_layer("Mixed_3b_Branch_1_Conv2d_0b_3x3_BatchNorm")
    assert bn.gamma is None and bn.epsilon == 0.001  # slim: center=True, scale=False
    assert slim_224.get_layer("Conv2d_1a_7x7").bias is None
    y = slim_224(rng.normal(size=(2, 224, 224, 3)).astype("float32"), training=False)
    assert tuple(y.shape) == (2, 1024)


def test_backbone_gradients_finite(rng):
    model = googlenet_caffe(64)  # small input: same layers, cheap
    x = ops.convert_to_tensor(rng.normal(size=(2, 64, 64, 3)).astype("float32"))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = ops.sum(ops.square(model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
    else:
        import jax

        def loss_fn(values):
            out, _ = model.stateless_call(values, [v.value for v in model.non_trainable_variables], x, training=True)
            return ops.sum(ops.square(out))

        grads = jax.grad(loss_fn)([v.value for v in model.trainable_variables])
    for grad in grads:
        assert np.all(np.isfinite(ops.convert_to_numpy(grad)))
    assert any(np.any(ops.convert_to_numpy(g) != 0) for g in grads)


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_size"):
        googlenet_caffe(None)
    with pytest.raises(ValueError, match="lrn"):
        googlenet_caffe(227, lrn="alexnet")
    with pytest.raises(ValueError, match="pooling"):
        inception_v1(224, pooling="max")
