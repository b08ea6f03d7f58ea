"""Load BVLC Caffe GoogLeNet ImageNet weights into ``googlenet_caffe()``.

Three forms of ``bvlc_googlenet.caffemodel`` are read:

* the ``.caffemodel`` itself, decoded without Caffe (``caffemodel.read_caffemodel``);
  ``python -m data_prep.weights --model googlenet_caffe --dest DIR`` downloads
  it and writes ``DIR/bvlc_googlenet.npz``;

* ``.npz`` with ``"<caffe layer>/weights"`` ``(out, in, kh, kw)`` and
  ``"<caffe layer>/biases"`` ``(out,)`` per convolution, e.g.
  ``conv1/7x7_s2/weights``, ``inception_4a/5x5_reduce/biases``. Written from
  pycaffe by::

      net = caffe.Net("deploy.prototxt", "bvlc_googlenet.caffemodel", caffe.TEST)
      np.savez(path, **{f"{n}/weights": p[0].data for n, p in net.params.items()},
                     **{f"{n}/biases": p[1].data for n, p in net.params.items()})

  Kernels already in Keras layout ``(kh, kw, in, out)`` are accepted too.
* ``.mat`` in the layout of the file the released Symm/HDML code loads
  (``tf_ckpt_from_caffe.mat``): ``"<caffe layer>"`` ``(out, in, kh, kw)`` and
  ``"<caffe layer>_bias"``.

Caffe kernels are ``(out, in, kh, kw)`` cross-correlations, as Keras's, so the
conversion is the transpose ``(2, 3, 1, 0)``; the first layer expects BGR
inputs (``"caffe"`` preprocessing). The classifier ``loss3/classifier`` and the
auxiliary heads (``loss1/*``, ``loss2/*``) are ignored.
"""

import os

import numpy as np

from symm_keras.models.caffemodel import read_caffemodel
from symm_keras.models.googlenet_caffe import caffe_conv_shapes, keras_name

CAFFEMODEL_URL = "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
HOW_TO_GET = (
    "Download and convert the BVLC GoogLeNet weights with\n"
    "    python -m data_prep.weights --model googlenet_caffe --dest DIR\n"
    f"(needs internet: it fetches {CAFFEMODEL_URL} and writes DIR/bvlc_googlenet.npz), then pass "
    "weights='DIR/bvlc_googlenet.npz' (a .caffemodel or the Symm/HDML 'tf_ckpt_from_caffe.mat' work too) "
    "or set SYMM_KERAS_WEIGHTS=DIR and use weights='imagenet'."
)


def read_caffe_googlenet_weights(path):
    """``{caffe layer: (kernel (kh, kw, in, out), bias (out,))}`` from a ``.caffemodel``, ``.npz`` or ``.mat``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Caffe GoogLeNet weights not found: {path}\n{HOW_TO_GET}")
    if path.endswith(".caffemodel"):
        arrays = {}
        for layer, blobs in read_caffemodel(path).items():
            arrays[f"{layer}/weights"] = blobs[0]
            arrays[f"{layer}/biases"] = blobs[1] if len(blobs) > 1 else None
        kernel_key, bias_key = "{}/weights", "{}/biases"
    elif path.endswith(".mat"):
        import scipy.io

        arrays = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
        kernel_key, bias_key = "{}", "{}_bias"
    elif path.endswith(".npz"):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        kernel_key, bias_key = "{}/weights", "{}/biases"
    else:
        raise ValueError(f"Caffe GoogLeNet weights must be a .caffemodel, .npz or .mat file, got {path}\n{HOW_TO_GET}")
    expected = caffe_conv_shapes()
    weights, missing, wrong = {}, [], []
    for layer, caffe_shape in expected.items():
        kernel, bias = arrays.get(kernel_key.format(layer)), arrays.get(bias_key.format(layer))
        if kernel is None or bias is None:
            missing.append(layer)
            continue
        out, cin, kh, kw = caffe_shape
        if kernel.shape == caffe_shape:
            kernel = np.transpose(kernel, (2, 3, 1, 0))
        elif kernel.shape != (kh, kw, cin, out):
            wrong.append(f"{layer}: {kernel.shape} (expected Caffe {caffe_shape} or Keras {(kh, kw, cin, out)})")
            continue
        bias = np.asarray(bias).reshape(-1)
        if bias.shape != (out,):
            wrong.append(f"{layer} bias: {bias.shape} (expected {(out,)})")
            continue
        weights[layer] = (kernel, bias)
    if missing:
        shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise ValueError(f"{len(missing)} GoogLeNet layer(s) missing from {path}: {shown}\n{HOW_TO_GET}")
    if wrong:
        raise ValueError(f"shape mismatch in {path}:\n  " + "\n  ".join(wrong[:10]))
    return weights


def load_caffe_googlenet_weights(model, path):
    """Copy a Caffe GoogLeNet numpy export into a model built by ``googlenet_caffe()``.

    Returns:
        The number of convolution layers loaded (57).
    """
    weights = read_caffe_googlenet_weights(path)
    for layer, (kernel, bias) in weights.items():
        try:
            conv = model.get_layer(keras_name(layer))
        except ValueError:
            raise ValueError(
                f"model {model.name!r} has no layer {keras_name(layer)!r}: load Caffe GoogLeNet weights "
                "into a model built by symm_keras.models.googlenet_caffe()."
            ) from None
        conv.kernel.assign(kernel.astype(conv.kernel.dtype))
        conv.bias.assign(bias.astype(conv.bias.dtype))
    return len(weights)


def save_caffe_googlenet_npz(model, path):
    """Write a ``googlenet_caffe()`` model's convolutions as a Caffe-layout ``.npz`` (the format read above)."""
    arrays = {}
    for layer in caffe_conv_shapes():
        conv = model.get_layer(keras_name(layer))
        arrays[f"{layer}/weights"] = np.transpose(np.asarray(conv.kernel.numpy()), (3, 2, 0, 1))
        arrays[f"{layer}/biases"] = np.asarray(conv.bias.numpy())
    np.savez(path, **arrays)
    return path
