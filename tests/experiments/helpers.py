"""Shared helpers for the experiments tests: tiny digits runs and event reading."""

import glob
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_config(method="npair", **changes):
    from experiments import train

    cfg = train.method_defaults(method, "digits").replace(steps=30, eval_every=10, checkpoint_every=10, embedding_dim=16)
    return cfg.replace(**changes) if changes else cfg


def digits():
    from experiments import train

    return train.digits_sources()


def read_events(run_dir):
    """{tag: [(step, value or image bytes)]} of every event file in ``run_dir``."""
    import tensorflow as tf

    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                out.setdefault(value.tag, []).append((event.step, tensor))
    return out


def model_arrays(checkpoint_dir):
    with np.load(os.path.join(checkpoint_dir, "model.npz")) as f:
        return [f[k] for k in sorted(f.files)]


def run_script(code, env=None, timeout=240):
    """Run ``code`` in a fresh interpreter (own devices/backends); returns CompletedProcess."""
    full_env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
