"""A real TensorBoard server reads a run's hard-pair ratio back over HTTP."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from experiments import train
from tests.experiments.helpers import digits, read_events, tiny_config


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def test_tensorboard_serves_the_synthetic_hard_pair_ratio(tmp_path):
    pytest.importorskip("tensorboard")
    logdir = str(tmp_path / "symm_run")
    train_source, test_source = digits()
    cfg = tiny_config("symm_npair", steps=20, eval_every=0, checkpoint_every=0)
    train.run_training(cfg, train_source, test_source, logdir, seed=0, log_every=5, tsne_points=0, nn_queries=0,
                       verbose=0)  # fmt: skip
    written = read_events(os.path.join(logdir, "train"))
    ratio_tags = [t for t in written if "ratio" in t]
    assert ratio_tags, f"no hard-pair ratio scalar among {sorted(written)}"
    tag = ratio_tags[0]

    port = _free_port()
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [tensorboard, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        query = urllib.parse.urlencode({"run": "train", "tag": tag})
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
        points, deadline = None, time.time() + 90
        while time.time() < deadline:
            assert server.poll() is None, "tensorboard exited"
            try:
                points = _get_json(url)
                if isinstance(points, list) and len(points) == 4:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        assert isinstance(points, list) and [p[1] for p in points] == [5, 10, 15, 20], points
        values = [p[2] for p in points]
        assert all(0.0 <= v <= 1.0 for v in values), values
        expected = [float(v) for _, v in written[tag]]
        assert values == pytest.approx(expected, rel=1e-6)
        runs = _get_json(f"http://127.0.0.1:{port}/data/runs")
        assert "train" in runs
    finally:
        server.terminate()
        server.wait(timeout=30)
