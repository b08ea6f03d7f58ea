"""TF-slim ``inception_v1`` (GoogLeNet with batch norm) as a Keras functional model.

Layer for layer ``tensorflow/models/research/slim/nets/inception_v1.py``
(``inception_v1_base`` up to ``Mixed_5c``, then global average pooling), the
network of the public ``inception_v1_2016_08_28`` ImageNet checkpoint:

* every convolution is ``conv (no bias) → BatchNorm (center, no scale,
  epsilon 0.001, decay 0.9997) → ReLU`` with ``SAME`` padding;
* the stem is ``Conv2d_1a_7x7/2 → MaxPool_2a_3x3/2 → Conv2d_2b_1x1 →
  Conv2d_2c_3x3 → MaxPool_3a_3x3/2`` (no LRN);
* the inception modules have the filter counts of Szegedy et al. Table 1 but
  the "5×5" branch is a 3×3 convolution (slim's choice), and
  ``MaxPool_5a_2x2`` is 2×2/2. ``Mixed_5b/Branch_2``'s second convolution is
  named ``Conv2d_0a_3x3`` in slim (not ``0b``); the names here follow slim.

Keras layer names are the slim scopes without ``InceptionV1/`` and with ``/`` →
``_`` (``Mixed_3b_Branch_1_Conv2d_0b_3x3``, ``..._BatchNorm``), so
``slim_checkpoint.load_slim_inception_v1_checkpoint`` maps the checkpoint one to one.
Inputs: ``"inception"`` preprocessing (RGB in [−1, 1]).
"""

import keras

from symm_keras.models.googlenet_caffe import GOOGLENET_MODULES

SLIM_SCOPE = "InceptionV1"
BN_EPSILON = 0.001
BN_MOMENTUM = 0.9997


def keras_name(slim_scope):
    """Keras layer name of a slim scope (``Mixed_3b/Branch_0/Conv2d_0a_1x1`` → ``Mixed_3b_Branch_0_Conv2d_0a_1x1``)."""
    return slim_scope.replace("/", "_")


def _conv_bn(x, filters, kernel_size, scope, strides=1, bn_momentum=BN_MOMENTUM):
    name = keras_name(scope)
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name
    )(x)
    x = keras.layers.BatchNormalization(
        momentum=bn_momentum, epsilon=BN_EPSILON, center=True, scale=False, name=name + "_BatchNorm"
    )(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def _mixed(x, module, f1, f3r, f3, f5r, f5, fp, bn_momentum):
    second = "Conv2d_0a_3x3" if module == "Mixed_5b" else "Conv2d_0b_3x3"
    b0 = _conv_bn(x, f1, 1, f"{module}/Branch_0/Conv2d_0a_1x1", bn_momentum=bn_momentum)
    b1 = _conv_bn(x, f3r, 1, f"{module}/Branch_1/Conv2d_0a_1x1", bn_momentum=bn_momentum)
    b1 = _conv_bn(b1, f3, 3, f"{module}/Branch_1/Conv2d_0b_3x3", bn_momentum=bn_momentum)
    b2 = _conv_bn(x, f5r, 1, f"{module}/Branch_2/Conv2d_0a_1x1", bn_momentum=bn_momentum)
    b2 = _conv_bn(b2, f5, 3, f"{module}/Branch_2/{second}", bn_momentum=bn_momentum)
    b3 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=keras_name(f"{module}/Branch_3/MaxPool_0a_3x3"))(x)
    b3 = _conv_bn(b3, fp, 1, f"{module}/Branch_3/Conv2d_0b_1x1", bn_momentum=bn_momentum)
    return keras.layers.Concatenate(axis=-1, name=module)([b0, b1, b2, b3])


def inception_v1(input_size=224, pooling="avg", bn_momentum=BN_MOMENTUM, name="inception_v1"):
    """TF-slim Inception v1 (batch norm) without its logits (``include_top=False``).

    Args:
        input_size: side of the square RGB input (224 for the slim checkpoint;
            227 works too), or ``None`` for any size.
        pooling: ``"avg"`` → ``(B, 1024)`` global-average-pooled ``Mixed_5c``;
            ``None`` → the ``Mixed_5c`` map.
        bn_momentum: batch-norm moving-average decay (slim: 0.9997).
        name: model name.
    """
    if input_size is not None and (not isinstance(input_size, int) or input_size < 32):
        raise ValueError(f"inception_v1 needs input_size None or an integer >= 32, got {input_size!r}")
    if pooling not in ("avg", None):
        raise ValueError(f"pooling must be 'avg' or None, got {pooling!r}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _conv_bn(inputs, 64, 7, "Conv2d_1a_7x7", strides=2, bn_momentum=bn_momentum)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_2a_3x3")(x)
    x = _conv_bn(x, 64, 1, "Conv2d_2b_1x1", bn_momentum=bn_momentum)
    x = _conv_bn(x, 192, 3, "Conv2d_2c_3x3", bn_momentum=bn_momentum)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_3a_3x3")(x)
    for _, module, *filters in GOOGLENET_MODULES:
        if module == "Mixed_4b":
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="MaxPool_4a_3x3")(x)
        if module == "Mixed_5b":
            x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name="MaxPool_5a_2x2")(x)
        x = _mixed(x, module, *filters, bn_momentum=bn_momentum)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="AvgPool_global")(x)
    return keras.Model(inputs, x, name=name)
