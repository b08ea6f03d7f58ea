"""Backbones by name: the two GoogLeNet forms and ``keras.applications`` models.

``build_backbone(name, weights, input_size)`` returns a ``keras.Model`` mapping
images ``(B, S, S, 3)`` to globally average-pooled features ``(B, D)``;
``backbone_preprocessing(name)`` names the input normalisation it expects, as
understood by ``symm_keras.data.ImagePreprocessing(mode=...)``:

* ``"caffe"``: BGR, ImageNet mean subtracted, 0–255 (BVLC GoogLeNet, ResNet50/101/152, VGG);
* ``"inception"``: RGB in [−1, 1] (slim Inception v1, InceptionV3, Xception, MobileNet, ResNetV2, NASNet);
* ``"torch"``: RGB, ImageNet mean/std on [0, 1] (DenseNet);
* ``"none"``: RGB 0–255; the model normalises itself (EfficientNet(V2), ConvNeXt, MobileNetV3).

``weights``: ``None`` (random), ``"imagenet"`` or a local file:

* ``googlenet_caffe``: a ``.caffemodel``, a ``.npz``/``.mat`` Caffe export
  (``caffe_weights``) or ``.weights.h5``; ``"imagenet"`` reads
  ``$SYMM_KERAS_WEIGHTS/bvlc_googlenet.npz`` (default directory ``~/.keras/symm_keras``;
  ``python -m data_prep.weights --model googlenet_caffe --dest DIR`` writes it);
* ``inception_v1``: a TF-slim checkpoint (prefix, ``.ckpt`` or directory) or
  ``.weights.h5``; ``"imagenet"`` reads ``$SYMM_KERAS_WEIGHTS/inception_v1.ckpt``
  (``python -m data_prep.weights --model inception_v1 --dest DIR`` fetches it);
* ``keras.applications`` models: ``"imagenet"`` downloads through Keras (cached
  in ``~/.keras/models``; offline it fails with a clear message), or a local
  ``.weights.h5``/``.h5`` saved from the same architecture.
"""

import os

import keras

from symm_keras.models import caffe_weights, slim_checkpoint
from symm_keras.models.googlenet_caffe import googlenet_caffe
from symm_keras.models.inception_v1 import inception_v1

WEIGHTS_ENV = "SYMM_KERAS_WEIGHTS"

# name: (keras.applications constructor, preprocessing mode, default input size)
KERAS_APPLICATIONS = {
    "inception_v3": ("InceptionV3", "inception", 299),
    "inception_resnet_v2": ("InceptionResNetV2", "inception", 299),
    "xception": ("Xception", "inception", 299),
    "resnet50": ("ResNet50", "caffe", 224),
    "resnet101": ("ResNet101", "caffe", 224),
    "resnet152": ("ResNet152", "caffe", 224),
    "resnet50_v2": ("ResNet50V2", "inception", 224),
    "resnet101_v2": ("ResNet101V2", "inception", 224),
    "resnet152_v2": ("ResNet152V2", "inception", 224),
    "vgg16": ("VGG16", "caffe", 224),
    "vgg19": ("VGG19", "caffe", 224),
    "mobilenet": ("MobileNet", "inception", 224),
    "mobilenet_v2": ("MobileNetV2", "inception", 224),
    "mobilenet_v3_small": ("MobileNetV3Small", "none", 224),
    "mobilenet_v3_large": ("MobileNetV3Large", "none", 224),
    "densenet121": ("DenseNet121", "torch", 224),
    "densenet169": ("DenseNet169", "torch", 224),
    "densenet201": ("DenseNet201", "torch", 224),
    "nasnet_mobile": ("NASNetMobile", "inception", 224),
    "nasnet_large": ("NASNetLarge", "inception", 331),
    "efficientnet_b0": ("EfficientNetB0", "none", 224),
    "efficientnet_b1": ("EfficientNetB1", "none", 240),
    "efficientnet_b2": ("EfficientNetB2", "none", 260),
    "efficientnet_b3": ("EfficientNetB3", "none", 300),
    "efficientnet_b4": ("EfficientNetB4", "none", 380),
    "efficientnet_v2_b0": ("EfficientNetV2B0", "none", 224),
    "efficientnet_v2_s": ("EfficientNetV2S", "none", 384),
    "convnext_tiny": ("ConvNeXtTiny", "none", 224),
    "convnext_small": ("ConvNeXtSmall", "none", 224),
    "convnext_base": ("ConvNeXtBase", "none", 224),
}
GOOGLENET_BACKBONES = {
    # name: (builder, preprocessing, default input size, default weights file)
    "googlenet_caffe": (googlenet_caffe, "caffe", 227, "bvlc_googlenet.npz"),
    "inception_v1": (inception_v1, "inception", 224, slim_checkpoint.CHECKPOINT_FILE),
}
_CONSTRUCTOR_ALIASES = {constructor.lower(): name for name, (constructor, _, _) in KERAS_APPLICATIONS.items()}


def available_backbones():
    """Names accepted by ``build_backbone`` (the GoogLeNet forms first)."""
    return list(GOOGLENET_BACKBONES) + list(KERAS_APPLICATIONS)


def _canonical(name):
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a string, got {name!r}")
    key = name.strip().lower().replace("-", "_")
    key = _CONSTRUCTOR_ALIASES.get(key, key)
    if key in GOOGLENET_BACKBONES or key in KERAS_APPLICATIONS:
        return key
    raise ValueError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")


def backbone_preprocessing(name):
    """Preprocessing mode (``symm_keras.data.ImagePreprocessing(mode=...)``) of backbone ``name``."""
    key = _canonical(name)
    if key in GOOGLENET_BACKBONES:
        return GOOGLENET_BACKBONES[key][1]
    return KERAS_APPLICATIONS[key][1]


def default_input_size(name):
    """The input side the backbone's ImageNet weights were trained at (GoogLeNet Caffe: 227 as in the papers)."""
    key = _canonical(name)
    if key in GOOGLENET_BACKBONES:
        return GOOGLENET_BACKBONES[key][2]
    return KERAS_APPLICATIONS[key][2]


def weights_dir():
    """Directory searched for ``weights="imagenet"`` GoogLeNet files: ``$SYMM_KERAS_WEIGHTS`` or ``~/.keras/symm_keras``."""
    return os.environ.get(WEIGHTS_ENV) or os.path.join(os.path.expanduser("~"), ".keras", "symm_keras")


def _check_weights_argument(weights):
    if weights is None or weights == "imagenet":
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")


def build_backbone(name, weights=None, input_size=None, pooling="avg", **kwargs):
    """Backbone ``name`` as ``keras.Model``: images → pooled features ``(B, D)``.

    Args:
        name: ``"googlenet_caffe"``, ``"inception_v1"`` or a ``keras.applications``
            model (``"resnet50"``, ``"mobilenet_v2"``, ``"InceptionV3"``, ...;
            see ``available_backbones()``).
        weights: ``None``, ``"imagenet"`` or a local weights file (see the module docstring).
        input_size: square input side; ``None`` → ``default_input_size(name)``.
        pooling: ``"avg"`` (features) or ``None`` (last feature map).
        **kwargs: passed to the builder (``lrn=`` for googlenet_caffe,
            ``bn_momentum=`` for inception_v1, ``alpha=`` for MobileNet, ...).
    """
    key = _canonical(name)
    _check_weights_argument(weights)
    input_size = default_input_size(key) if input_size is None else input_size
    if key in GOOGLENET_BACKBONES:
        builder, _, _, default_file = GOOGLENET_BACKBONES[key]
        model = builder(input_size=input_size, pooling=pooling, **kwargs)
        if weights is not None:
            path = os.path.join(weights_dir(), default_file) if weights == "imagenet" else os.fspath(weights)
            _load_googlenet_weights(key, model, path, from_imagenet=weights == "imagenet")
        return model
    return _keras_application(key, weights, input_size, pooling, **kwargs)


def _load_googlenet_weights(key, model, path, from_imagenet):
    if path.endswith(".weights.h5") or path.endswith(".keras"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{key} weights file not found: {path}")
        model.load_weights(path)
        return
    if key == "googlenet_caffe":
        if from_imagenet and not os.path.exists(path):  # also accept the .caffemodel or the Symm .mat there
            for alternative in (path[: -len(".npz")] + ".caffemodel", path[: -len(".npz")] + ".mat"):
                if os.path.exists(alternative):
                    path = alternative
                    break
        caffe_weights.load_caffe_googlenet_weights(model, path)
    else:
        slim_checkpoint.load_slim_inception_v1_checkpoint(model, path)


def _keras_application(key, weights, input_size, pooling, **kwargs):
    constructor_name, _, _ = KERAS_APPLICATIONS[key]
    constructor = getattr(keras.applications, constructor_name, None)
    if constructor is None:
        raise ValueError(f"keras.applications.{constructor_name} is not available in Keras {keras.__version__}")
    shape = (input_size, input_size, 3) if input_size else (None, None, 3)
    build = dict(include_top=False, input_shape=shape, pooling=pooling, **kwargs)
    if weights == "imagenet":
        try:
            return constructor(weights="imagenet", **build)
        except Exception as err:  # get_file raises a bare Exception("URL fetch failure ...") offline
            if "URL fetch failure" in str(err) or isinstance(err, OSError):
                raise RuntimeError(
                    f"could not download the ImageNet weights of {key} ({constructor_name}): {err}.\n"
                    "No internet? Download them where there is internet (they are cached in "
                    "~/.keras/models) or pass weights='/path/to/file.weights.h5' saved from "
                    f"keras.applications.{constructor_name}(include_top=False)."
                ) from None
            raise
    model = constructor(weights=None, **build)
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{key} weights file not found: {path}")
        try:
            model.load_weights(path)
        except Exception as err:
            raise ValueError(
                f"could not load {path} into {constructor_name}(include_top=False, input_shape={shape}): {err}"
            ) from None
    return model
