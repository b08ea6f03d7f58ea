"""data_prep.weights: download (resume, checksum) + unpack + check, against a local HTTP server."""

import dataclasses
import functools
import hashlib
import http.server
import os
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from data_prep.download import ChecksumError, DownloadError
from data_prep.weights import WEIGHTS, check_checkpoint, fetch_weights
from symm_keras.models.slim_checkpoint import slim_checkpoint_shapes
from tests.models.test_slim_checkpoint import write_checkpoint_v1


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support; records the ranges asked for."""

    ranges = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        requested = self.headers.get("Range")
        start = 0
        if requested and requested.startswith("bytes="):
            start = int(requested[len("bytes="):].split("-")[0])
            self.ranges.append(start)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture(scope="module")
def served_archive(tmp_path_factory):
    """A tar.gz laid out like inception_v1_2016_08_28.tar.gz (inception_v1.ckpt, V1 format, real names/shapes)."""
    root = tmp_path_factory.mktemp("server")
    tensors = {name: np.zeros(shape, "float32") for name, shape in slim_checkpoint_shapes().items()}
    ckpt_dir = tmp_path_factory.mktemp("ckpt")
    write_checkpoint_v1(ckpt_dir / "inception_v1.ckpt", tensors)
    archive = root / "inception_v1_2016_08_28.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ckpt_dir / "inception_v1.ckpt", arcname="inception_v1.ckpt")
    data = archive.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    remote = dataclasses.replace(
        WEIGHTS["inception_v1"],
        urls=(f"http://127.0.0.1:{server.server_port}/inception_v1_2016_08_28.tar.gz",),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    yield remote, data
    server.shutdown()


def test_official_source_is_pinned():
    remote = WEIGHTS["inception_v1"]
    assert remote.urls == ("http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz",)
    assert remote.size == 24642554 and len(remote.sha256) == 64


def test_download_unpack_and_check(tmp_path, served_archive):
    remote, _ = served_archive
    path = fetch_weights("inception_v1", tmp_path, remote=remote, progress=False)
    assert path == os.path.join(tmp_path, "inception_v1.ckpt") and os.path.exists(path)
    assert not os.path.exists(tmp_path / remote.name)  # archive removed by default
    assert fetch_weights("inception_v1", tmp_path, remote=remote, progress=False) == path  # no second download


def test_resume_partial_download(tmp_path, served_archive):
    remote, data = served_archive
    (tmp_path / (remote.name + ".part")).write_bytes(data[: len(data) // 2])
    RangeHandler.ranges.clear()
    fetch_weights("inception_v1", tmp_path, remote=remote, progress=False, keep_archive=True)
    assert RangeHandler.ranges == [len(data) // 2]
    assert (tmp_path / remote.name).read_bytes() == data


def test_checksum_mismatch(tmp_path, served_archive):
    remote, _ = served_archive
    bad = dataclasses.replace(remote, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="SHA-256"):
        fetch_weights("inception_v1", tmp_path, remote=bad, progress=False)
    assert os.path.exists(tmp_path / (remote.name + ".bad"))


def test_offline_message(tmp_path):
    offline = dataclasses.replace(WEIGHTS["inception_v1"], urls=("http://127.0.0.1:9/inception_v1_2016_08_28.tar.gz",))
    with pytest.raises(DownloadError, match="(?s)could not download inception_v1_2016_08_28.tar.gz.*place it at"):
        fetch_weights("inception_v1", tmp_path, remote=offline, timeout=2, progress=False)
    with pytest.raises(ValueError, match="--model must be one of"):
        fetch_weights("resnet", tmp_path)


def test_wrong_checkpoint_is_reported(tmp_path):
    write_checkpoint_v1(tmp_path / "inception_v1.ckpt", {"InceptionV1/Conv2d_1a_7x7/weights": np.zeros((7, 7, 3, 32), "float32")})
    with pytest.raises(ValueError, match=r"Conv2d_1a_7x7/weights: \(7, 7, 3, 32\)"):
        check_checkpoint(str(tmp_path / "inception_v1.ckpt"))


def test_command_line_offline(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.weights", "--model", "inception_v1", "--dest", str(tmp_path),
         "--mirror", "http://127.0.0.1:9", "--timeout", "2", "--noprogress"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "no internet?" in result.stderr and "place it at" in result.stderr


def test_googlenet_caffe_download_and_convert(tmp_path):
    """bvlc_googlenet.caffemodel (served locally, protobuf-serialised) → DEST/bvlc_googlenet.npz, checked."""
    from tests.models.test_caffemodel import googlenet_blobs, write_caffemodel

    root = tmp_path / "server"
    root.mkdir()
    blobs = googlenet_blobs(np.random.default_rng(0))
    data = write_caffemodel(root / "bvlc_googlenet.caffemodel", blobs, legacy=True).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = dataclasses.replace(
            WEIGHTS["googlenet_caffe"],
            urls=(f"http://127.0.0.1:{server.server_port}/bvlc_googlenet.caffemodel",),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        dest = tmp_path / "weights"
        path = fetch_weights("googlenet_caffe", dest, remote=remote, progress=False)
    finally:
        server.shutdown()
    assert path == os.path.join(dest, "bvlc_googlenet.npz")
    assert not os.path.exists(dest / "bvlc_googlenet.caffemodel")
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["inception_4a/3x3/weights"], blobs["inception_4a/3x3"][0])
    assert WEIGHTS["googlenet_caffe"].size == 53533754 and not WEIGHTS["googlenet_caffe"].extract
