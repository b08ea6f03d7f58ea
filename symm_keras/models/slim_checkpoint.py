"""Load the TF-slim ``inception_v1_2016_08_28`` ImageNet checkpoint into ``inception_v1()``.

The public checkpoint (http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz,
file ``inception_v1.ckpt``; ``python -m data_prep.weights --model inception_v1 --dest DIR``
downloads and unpacks it) stores, per convolution scope ``S`` of
``slim_conv_shapes()``::

    InceptionV1/S/weights                   (kh, kw, in, out) → Conv2D kernel (same layout)
    InceptionV1/S/BatchNorm/beta            (out,)            → BatchNormalization beta
    InceptionV1/S/BatchNorm/moving_mean     (out,)            → moving_mean
    InceptionV1/S/BatchNorm/moving_variance (out,)            → moving_variance

plus the 1001-way ``InceptionV1/Logits/Conv2d_0c_1x1/{weights,biases}``
classifier (unused: the model is ``include_top=False``) and bookkeeping
variables (``global_step``), which are ignored. The checkpoint is read with
``tf.train.load_checkpoint`` (V1 ``.ckpt`` files and V2 ``.index``/``.data``
prefixes alike), so loading needs TensorFlow installed but works with any
Keras backend.
"""

import glob
import os

import numpy as np

from symm_keras.models.googlenet_caffe import GOOGLENET_MODULES
from symm_keras.models.inception_v1 import SLIM_SCOPE, keras_name

CHECKPOINT_URL = "http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz"
CHECKPOINT_FILE = "inception_v1.ckpt"
HOW_TO_GET = (
    "Download the TF-slim ImageNet checkpoint with\n"
    "    python -m data_prep.weights --model inception_v1 --dest DIR\n"
    f"(needs internet: it fetches {CHECKPOINT_URL} and unpacks {CHECKPOINT_FILE}), then pass "
    "weights='DIR/inception_v1.ckpt' or set SYMM_KERAS_WEIGHTS=DIR and use weights='imagenet'."
)
BN_PARTS = ("beta", "moving_mean", "moving_variance")


def slim_conv_shapes():
    """``{slim scope: (kh, kw, in, out)}`` of every convolution of ``inception_v1_base``."""
    shapes = {"Conv2d_1a_7x7": (7, 7, 3, 64), "Conv2d_2b_1x1": (1, 1, 64, 64), "Conv2d_2c_3x3": (3, 3, 64, 192)}
    channels = 192
    for _, module, f1, f3r, f3, f5r, f5, fp in GOOGLENET_MODULES:
        second = "Conv2d_0a_3x3" if module == "Mixed_5b" else "Conv2d_0b_3x3"
        shapes[f"{module}/Branch_0/Conv2d_0a_1x1"] = (1, 1, channels, f1)
        shapes[f"{module}/Branch_1/Conv2d_0a_1x1"] = (1, 1, channels, f3r)
        shapes[f"{module}/Branch_1/Conv2d_0b_3x3"] = (3, 3, f3r, f3)
        shapes[f"{module}/Branch_2/Conv2d_0a_1x1"] = (1, 1, channels, f5r)
        shapes[f"{module}/Branch_2/{second}"] = (3, 3, f5r, f5)
        shapes[f"{module}/Branch_3/Conv2d_0b_1x1"] = (1, 1, channels, fp)
        channels = f1 + f3 + f5 + fp
    return shapes


def slim_checkpoint_shapes(num_classes=1001):
    """``{variable name: shape}`` of the model variables in ``inception_v1_2016_08_28``.

    Args:
        num_classes: logits size (1001 in the public checkpoint); ``None`` omits the logits.
    """
    shapes = {}
    for scope, kernel_shape in slim_conv_shapes().items():
        shapes[f"{SLIM_SCOPE}/{scope}/weights"] = kernel_shape
        for part in BN_PARTS:
            shapes[f"{SLIM_SCOPE}/{scope}/BatchNorm/{part}"] = (kernel_shape[-1],)
    if num_classes:
        shapes[f"{SLIM_SCOPE}/Logits/Conv2d_0c_1x1/weights"] = (1, 1, 1024, num_classes)
        shapes[f"{SLIM_SCOPE}/Logits/Conv2d_0c_1x1/biases"] = (num_classes,)
    return shapes


def resolve_checkpoint(path):
    """A checkpoint prefix/file from ``path`` (a prefix, a ``.ckpt`` file or a directory holding one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        candidates = sorted(glob.glob(os.path.join(path, "*.ckpt")) + glob.glob(os.path.join(path, "*.ckpt.index")))
        if not candidates:
            raise FileNotFoundError(f"no TF checkpoint (*.ckpt or *.ckpt.index) in directory {path}.\n{HOW_TO_GET}")
        return candidates[0][: -len(".index")] if candidates[0].endswith(".index") else candidates[0]
    if os.path.exists(path) or os.path.exists(path + ".index"):
        return path[: -len(".index")] if path.endswith(".index") else path
    raise FileNotFoundError(f"TF-slim Inception v1 checkpoint not found: {path}\n{HOW_TO_GET}")


def read_slim_checkpoint(path):
    """``{name: np.ndarray}`` of the Inception v1 variables in the checkpoint at ``path``."""
    import tensorflow as tf

    prefix = resolve_checkpoint(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as err:  # TF raises DataLossError/NotFoundError/ValueError by format
        raise ValueError(f"could not read {prefix} as a TensorFlow checkpoint: {err}\n{HOW_TO_GET}") from None
    names = reader.get_variable_to_shape_map()
    return {name: reader.get_tensor(name) for name in names if name.startswith(SLIM_SCOPE + "/")}


def load_slim_inception_v1_checkpoint(model, path):
    """Copy the slim checkpoint at ``path`` into a model built by ``inception_v1()``.

    Every convolution and batch norm of the model must find its variables in
    the checkpoint with the expected shape; otherwise nothing is half-loaded:
    a ``ValueError`` lists the missing or mis-shaped variables.

    Returns:
        The number of checkpoint tensors copied.
    """
    tensors = read_slim_checkpoint(path)
    expected = slim_checkpoint_shapes(num_classes=None)
    missing = sorted(name for name in expected if name not in tensors)
    if missing:
        shown = "\n  ".join(missing[:10]) + ("\n  ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} Inception v1 variable(s) missing from checkpoint {path}:\n  {shown}\n"
            f"Is it the TF-slim inception_v1 checkpoint? {HOW_TO_GET}"
        )
    wrong = [
        f"{name}: checkpoint {tuple(tensors[name].shape)} vs expected {shape}"
        for name, shape in expected.items()
        if tuple(tensors[name].shape) != shape
    ]
    if wrong:
        raise ValueError(f"shape mismatch between checkpoint {path} and inception_v1:\n  " + "\n  ".join(wrong[:10]))
    assignments = []
    for scope in slim_conv_shapes():
        conv = _layer(model, keras_name(scope))
        norm = _layer(model, keras_name(scope) + "_BatchNorm")
        prefix = f"{SLIM_SCOPE}/{scope}"
        assignments.append((conv.kernel, tensors[f"{prefix}/weights"]))
        assignments.append((norm.beta, tensors[f"{prefix}/BatchNorm/beta"]))
        assignments.append((norm.moving_mean, tensors[f"{prefix}/BatchNorm/moving_mean"]))
        assignments.append((norm.moving_variance, tensors[f"{prefix}/BatchNorm/moving_variance"]))
    for variable, value in assignments:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return len(assignments)


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer {name!r}: load slim checkpoints into a model built by "
            "symm_keras.models.inception_v1()."
        ) from None
