"""Download ImageNet weights for the GoogLeNet backbones.

    python -m data_prep.weights --model inception_v1 --dest ~/.keras/symm_keras
    SYMM_KERAS_WEIGHTS=~/.keras/symm_keras python -m experiments.train --backbone inception_v1 ...

``inception_v1``: the TF-slim ImageNet checkpoint
``inception_v1_2016_08_28.tar.gz`` (top-1 69.8 %), fetched with
``data_prep.download``'s helpers: a partial download is kept as ``.part`` and
resumed with an HTTP ``Range`` request, the archive is checked against its
published size and SHA-256 (as listed by OpenVINO's Open Model Zoo,
``models/public/googlenet-v1-tf/model.yml``), unpacked to ``DEST/inception_v1.ckpt``
and then read back to check every Inception v1 variable is present with its
expected shape. Offline, the error says which file to place where by hand.

``googlenet_caffe``: BVLC's ``bvlc_googlenet.caffemodel`` (same resume and
size/SHA-256 checks, values from Open Model Zoo ``googlenet-v1/model.yml``),
decoded without Caffe and written as ``DEST/bvlc_googlenet.npz`` (the file
``weights="imagenet"`` looks for), then read back to check all 57 convolutions.
"""

import os
import sys

from data_prep.download import ChecksumError, DownloadError, download_file, extract_archive
from data_prep.sources import RemoteFile

WEIGHTS = {
    "inception_v1": RemoteFile(
        name="inception_v1_2016_08_28.tar.gz",
        urls=("http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz",),
        size=24642554,
        sha256="7a620c430fcaba8f8f716241f5148c4c47c035cce4e49ef02cfbe6cd1adf96a6",
        extract=True,
        note="TF-slim Inception v1 ImageNet checkpoint (tensorflow/models research/slim README)",
    ),
    "googlenet_caffe": RemoteFile(
        name="bvlc_googlenet.caffemodel",
        urls=("http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel",),
        size=53533754,
        sha256="6f7101e3a2183738a7125a0c5021ba82a1feb4228c5ca0924d991b6daf6f6fad",
        extract=False,
        note="BVLC GoogLeNet ImageNet weights (BVLC/caffe models/bvlc_googlenet)",
    ),
}
CHECKPOINTS = {"inception_v1": "inception_v1.ckpt", "googlenet_caffe": "bvlc_googlenet.npz"}


def fetch_weights(model, dest, mirror=None, timeout=60.0, progress=True, keep_archive=False, remote=None, verify=True):
    """Download, verify, unpack and check the ImageNet weights of ``model``; return the checkpoint path.

    Args:
        model: ``"inception_v1"`` or ``"googlenet_caffe"``.
        dest: directory to place the checkpoint in.
        mirror: base URL tried first (``mirror/<archive name>``).
        timeout: socket timeout in seconds.
        progress: tqdm progress bars.
        keep_archive: keep the ``.tar.gz`` after unpacking.
        remote: a ``RemoteFile`` replacing the official one (tests, private mirrors).
        verify: read the unpacked checkpoint and check every variable's name and shape.
    """
    if model not in WEIGHTS:
        raise ValueError(f"--model must be one of {sorted(WEIGHTS)}, got {model!r}.")
    remote = remote or WEIGHTS[model]
    checkpoint = os.path.join(dest, CHECKPOINTS[model])
    if model == "googlenet_caffe":
        return _fetch_caffe(remote, dest, checkpoint, mirror, timeout, progress, keep_archive, verify)
    if not (os.path.exists(checkpoint) or os.path.exists(checkpoint + ".index")):
        archive = download_file(remote, dest, mirror=mirror, timeout=timeout, progress=progress)
        extract_archive(archive, dest, progress=progress)
        if not (os.path.exists(checkpoint) or os.path.exists(checkpoint + ".index")):
            raise FileNotFoundError(f"{archive} did not contain {CHECKPOINTS[model]}.")
        if not keep_archive:
            os.remove(archive)
    if verify:
        check_checkpoint(checkpoint)
    return checkpoint


def _fetch_caffe(remote, dest, npz_path, mirror, timeout, progress, keep_archive, verify):
    from symm_keras.models.caffe_weights import read_caffe_googlenet_weights
    from symm_keras.models.caffemodel import caffemodel_to_npz

    if not os.path.exists(npz_path):
        caffemodel = download_file(remote, dest, mirror=mirror, timeout=timeout, progress=progress)
        caffemodel_to_npz(caffemodel, npz_path + ".tmp.npz")
        read_caffe_googlenet_weights(npz_path + ".tmp.npz")  # all 57 convolutions with their shapes
        os.replace(npz_path + ".tmp.npz", npz_path)
        if not keep_archive:
            os.remove(caffemodel)
    elif verify:
        read_caffe_googlenet_weights(npz_path)
    return npz_path


def check_checkpoint(checkpoint):
    """Raise ``ValueError`` unless ``checkpoint`` holds every slim Inception v1 variable with its shape."""
    from symm_keras.models.slim_checkpoint import read_slim_checkpoint, slim_checkpoint_shapes

    tensors = read_slim_checkpoint(checkpoint)
    problems = [
        f"{name}: {'missing' if name not in tensors else tuple(tensors[name].shape)} (expected {shape})"
        for name, shape in slim_checkpoint_shapes(num_classes=None).items()
        if name not in tensors or tuple(tensors[name].shape) != shape
    ]
    if problems:
        raise ValueError(f"{checkpoint} is not the slim Inception v1 checkpoint:\n  " + "\n  ".join(problems[:10]))


def _define_flags():
    from absl import flags

    flags.DEFINE_enum("model", "inception_v1", sorted(WEIGHTS), "Backbone whose ImageNet weights to download.")
    flags.DEFINE_string("dest", None, "Directory for the weights (then set SYMM_KERAS_WEIGHTS to it).")
    flags.DEFINE_string("mirror", None, "Base URL tried first (mirror/<archive name>).")
    flags.DEFINE_float("timeout", 60.0, "Socket timeout in seconds.")
    flags.DEFINE_bool("progress", True, "Show tqdm progress bars.")
    flags.DEFINE_bool("keep_archive", False, "Keep the downloaded .tar.gz/.caffemodel after unpacking/converting.")
    flags.mark_flags_as_required(["dest"])


def main(argv):
    from absl import flags

    del argv
    f = flags.FLAGS
    try:
        path = fetch_weights(f.model, f.dest, f.mirror, f.timeout, f.progress, f.keep_archive)
    except DownloadError as error:
        print(f"error (no internet?): {error}", file=sys.stderr)
        return 1
    except (ChecksumError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"ok: {path}")
    print(f"use: SYMM_KERAS_WEIGHTS={os.path.abspath(f.dest)} with weights='imagenet', or weights='{path}'")
    return 0


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
