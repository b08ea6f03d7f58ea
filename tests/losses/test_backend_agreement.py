"""Every P×K loss gives the same value and gradient on TensorFlow and JAX (1e-5)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT


def _start(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.losses.backend_values"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _collect(process, backend):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, f"{backend} run failed:\n{err[-4000:]}"
    line = [row for row in out.splitlines() if row.startswith("BACKEND_VALUES ")]
    assert line, f"{backend} run printed no values:\n{out[-2000:]}"
    return json.loads(line[-1][len("BACKEND_VALUES ") :])


@pytest.mark.backend("tensorflow")  # runs both backends itself in subprocesses: once, in the TensorFlow pass
def test_tensorflow_and_jax_agree():
    pytest.importorskip("jax")
    processes = {backend: _start(backend) for backend in ("tensorflow", "jax")}
    results = {backend: _collect(p, backend) for backend, p in processes.items()}
    tf_values, jax_values = results["tensorflow"], results["jax"]
    assert sorted(tf_values) == sorted(jax_values)
    assert {"NPairLoss", "TripletLoss", "AngularLoss"} <= set(tf_values)
    for name in tf_values:
        a, b = tf_values[name], jax_values[name]
        np.testing.assert_allclose(b["value"], a["value"], rtol=1e-5, atol=1e-6, err_msg=name)
        grad_a, grad_b = np.asarray(a["grad"]), np.asarray(b["grad"])
        scale = max(1.0, float(np.max(np.abs(grad_a))))
        np.testing.assert_allclose(grad_b, grad_a, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
