"""GoogLeNet in the BVLC/Caffe layout (LRN, no batch norm), as a Keras functional model.

Szegedy et al., "Going deeper with convolutions", CVPR 2015, Table 1, as
released in BVLC's ``models/bvlc_googlenet/train_val.prototxt`` — the network
Symm (Sec. 4, 227 × 227 crops) and DAMLRRM (Sec. 4.1) fine-tune::

    conv1/7x7_s2 (64, pad 3) → pool1/3x3_s2 → pool1/norm1 (LRN 5, 1e-4, 0.75)
    → conv2/3x3_reduce (64) → conv2/3x3 (192, pad 1) → conv2/norm2 (LRN)
    → pool2/3x3_s2 → inception_3a, 3b → pool3/3x3_s2
    → inception_4a … 4e → pool4/3x3_s2 → inception_5a, 5b → global average pool (1024)

Every convolution has a bias and a ReLU; the stride-2 max pools use Caffe's
ceil-mode output size (``CaffeMaxPooling2D``); an inception module
concatenates 1×1 | 1×1→3×3 | 1×1→5×5 | 3×3 max pool→1×1 branches.

Keras layer names are the Caffe names with ``/`` → ``_`` (``conv1_7x7_s2``,
``inception_4a_5x5_reduce``), so the Caffe weight converter
(``caffe_weights.load_caffe_googlenet_weights``) maps them one to one.
Inputs: ``"caffe"`` preprocessing (BGR, ImageNet mean subtracted, 0–255 scale).

The released Symm code (``clovaai/symmetrical-synthesis``, ``nets/googlenet.py``)
runs the same Caffe weights in TensorFlow with two differences from Caffe:
``tf.nn.local_response_normalization(depth_radius=5, alpha=1e-4)`` (a 11-channel
window and no ``/n`` on alpha) and RGB mean subtraction without the BGR swap.
``lrn="caffe"`` (default) reproduces BVLC; ``lrn="symm_official"`` the released code's LRN.
"""

import keras

from symm_keras.models.googlenet_layers import CaffeMaxPooling2D, LocalResponseNormalization

# (caffe module, slim module, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) — Szegedy et al. Table 1.
GOOGLENET_MODULES = (
    ("inception_3a", "Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("inception_3b", "Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("inception_4a", "Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("inception_4b", "Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("inception_4c", "Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("inception_4d", "Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("inception_4e", "Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("inception_5a", "Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("inception_5b", "Mixed_5c", 384, 192, 384, 48, 128, 128),
)
# Stride-2 max pool inserted before these modules.
POOL_BEFORE = {"inception_4a": "pool3/3x3_s2", "inception_5a": "pool4/3x3_s2"}

_LRN_SETTINGS = {
    "caffe": dict(depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75),
    "symm_official": dict(depth_radius=5, bias=1.0, alpha=1e-4, beta=0.75),
}


def keras_name(caffe_name):
    """Keras layer name of a Caffe layer (``conv1/7x7_s2`` → ``conv1_7x7_s2``)."""
    return caffe_name.replace("/", "_")


def caffe_conv_shapes():
    """``{caffe name: (out, in, kh, kw)}``: the blob shapes of ``bvlc_googlenet.caffemodel``."""
    shapes = {"conv1/7x7_s2": (64, 3, 7, 7), "conv2/3x3_reduce": (64, 64, 1, 1), "conv2/3x3": (192, 64, 3, 3)}
    channels = 192
    for name, _, f1, f3r, f3, f5r, f5, fp in GOOGLENET_MODULES:
        shapes[f"{name}/1x1"] = (f1, channels, 1, 1)
        shapes[f"{name}/3x3_reduce"] = (f3r, channels, 1, 1)
        shapes[f"{name}/3x3"] = (f3, f3r, 3, 3)
        shapes[f"{name}/5x5_reduce"] = (f5r, channels, 1, 1)
        shapes[f"{name}/5x5"] = (f5, f5r, 5, 5)
        shapes[f"{name}/pool_proj"] = (fp, channels, 1, 1)
        channels = f1 + f3 + f5 + fp
    return shapes


def _conv(x, filters, kernel_size, caffe_name, strides=1, padding="same"):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        kernel_initializer="glorot_uniform",
        name=keras_name(caffe_name),
    )(x)
    return keras.layers.ReLU(name=keras_name(caffe_name) + "_relu")(x)


def _inception(x, name, f1, f3r, f3, f5r, f5, fp):
    b1 = _conv(x, f1, 1, f"{name}/1x1")
    b3 = _conv(_conv(x, f3r, 1, f"{name}/3x3_reduce"), f3, 3, f"{name}/3x3")
    b5 = _conv(_conv(x, f5r, 1, f"{name}/5x5_reduce"), f5, 5, f"{name}/5x5")
    bp = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=keras_name(f"{name}/pool"))(x)
    bp = _conv(bp, fp, 1, f"{name}/pool_proj")
    return keras.layers.Concatenate(axis=-1, name=keras_name(f"{name}/output"))([b1, b3, b5, bp])


def googlenet_caffe(input_size=227, pooling="avg", lrn="caffe", name="googlenet_caffe"):
    """BVLC GoogLeNet without its classifier (``include_top=False``).

    Args:
        input_size: side of the square RGB input (227 in Symm/DAMLRRM, 224 in BVLC).
        pooling: ``"avg"`` → ``(B, 1024)`` global-average-pooled features
            (``pool5/7x7_s1`` for 224/227 inputs); ``None`` → the
            ``inception_5b/output`` map ``(B, 7, 7, 1024)``.
        lrn: ``"caffe"`` (BVLC, default) or ``"symm_official"`` (the released Symm code's LRN).
        name: model name.

    Returns:
        An uninitialised ``keras.Model`` (load weights with
        ``load_caffe_googlenet_weights``).
    """
    if not isinstance(input_size, int) or input_size < 32:
        raise ValueError(f"googlenet_caffe needs a fixed integer input_size >= 32 (e.g. 227), got {input_size!r}")
    if pooling not in ("avg", None):
        raise ValueError(f"pooling must be 'avg' or None, got {pooling!r}")
    if lrn not in _LRN_SETTINGS:
        raise ValueError(f"lrn must be one of {sorted(_LRN_SETTINGS)}, got {lrn!r}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.ZeroPadding2D(3, name="conv1_7x7_s2_pad")(inputs)
    x = _conv(x, 64, 7, "conv1/7x7_s2", strides=2, padding="valid")
    x = CaffeMaxPooling2D(3, 2, name="pool1_3x3_s2")(x)
    x = LocalResponseNormalization(**_LRN_SETTINGS[lrn], name="pool1_norm1")(x)
    x = _conv(x, 64, 1, "conv2/3x3_reduce")
    x = _conv(x, 192, 3, "conv2/3x3")
    x = LocalResponseNormalization(**_LRN_SETTINGS[lrn], name="conv2_norm2")(x)
    x = CaffeMaxPooling2D(3, 2, name="pool2_3x3_s2")(x)
    for module, _, *filters in GOOGLENET_MODULES:
        if module in POOL_BEFORE:
            x = CaffeMaxPooling2D(3, 2, name=keras_name(POOL_BEFORE[module]))(x)
        x = _inception(x, module, *filters)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="pool5_global_avg")(x)
    return keras.Model(inputs, x, name=name)
