"""End-to-end training on digits: outputs, TensorBoard content, checkpoints and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from experiments import methods, train
from experiments.checkpoints import CheckpointManager
from tests.experiments.helpers import REPO, digits, model_arrays, read_events, tiny_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("run"))
    train_source, test_source = digits()
    cfg = tiny_config("npair")
    result = train.run_training(cfg, train_source, test_source, logdir, seed=0, log_every=5, tsne_points=150,
                                nn_queries=4, nn_k=3, verbose=0)  # fmt: skip
    return logdir, cfg, result


def test_results_json_and_table(finished_run):
    logdir, cfg, result = finished_run
    with open(os.path.join(logdir, "results.json")) as f:
        saved = json.load(f)
    assert saved["steps"] == 30 and saved["method"] == "npair" and saved["config"]["name"] == cfg.name
    for key in ("nmi", "f1", "recall@1", "recall@2", "recall@4", "recall@8", "map@r", "r_precision"):
        assert 0.0 <= saved["metrics"][key] <= 1.0, key
    assert [h["step"] for h in saved["history"]] == [0, 10, 20, 30]
    assert saved["evaluation"]["kmeans"] == "sklearn" and saved["evaluation"]["num_items"] == 896
    table = open(os.path.join(logdir, "results.md")).read()
    assert "| recall@1 |" in table and "| map@r |" in table and "| nmi |" in table
    assert f"| recall@1 | {100 * saved['metrics']['recall@1']:.1f} |" in table


def test_tensorboard_scalars_images_and_projector(finished_run):
    logdir, _, _ = finished_run
    train_events = read_events(os.path.join(logdir, "train"))
    assert [s for s, _ in train_events["loss"]] == [5, 10, 15, 20, 25, 30]
    assert np.isfinite([float(v) for _, v in train_events["loss"]]).all()
    assert float(train_events["learning_rate"][-1][1]) == pytest.approx(1e-4)
    eval_events = read_events(os.path.join(logdir, "eval"))
    for tag in ("recall@1", "recall@8", "nmi", "f1", "map@r", "r_precision"):
        assert [s for s, _ in eval_events[tag]] == [0, 10, 20, 30], tag
    for tag in ("nearest_neighbours", "tsne"):
        (step, tensor), = eval_events[tag]
        assert step == 30 and tensor.shape[0] == 3  # width, height, encoded PNG
    projector = open(os.path.join(logdir, "eval", "projector_config.pbtxt")).read()
    assert 'tensor_path: "test_embedding.tsv"' in projector
    embedding = np.loadtxt(os.path.join(logdir, "eval", "test_embedding.tsv"), delimiter="\t")
    assert embedding.shape == (896, 16)
    labels = open(os.path.join(logdir, "eval", "test_embedding_metadata.tsv")).read().split()
    assert sorted(set(labels)) == ["5", "6", "7", "8", "9"]


def test_checkpoints_every_n_steps_and_at_the_end(finished_run):
    logdir, _, _ = finished_run
    manager = CheckpointManager(os.path.join(logdir, "checkpoints"))
    assert [os.path.basename(p) for p in manager.all()] == ["step-00000020", "step-00000030"]  # keeps the last 2
    state = manager.read_state(manager.latest())
    assert state["step"] == 30 and state["seed"] == 0


def test_finished_run_is_not_retrained_and_other_config_is_refused(finished_run):
    logdir, cfg, result = finished_run
    train_source, test_source = digits()
    again = train.run_training(cfg, train_source, test_source, logdir, seed=0, tsne_points=0, verbose=0)
    assert again["metrics"]["recall@1"] == pytest.approx(result["metrics"]["recall@1"])
    with pytest.raises(train.UsageError, match="different run"):
        train.run_training(cfg.replace(lr=0.5), train_source, test_source, logdir, seed=0, verbose=0)
    with pytest.raises(train.UsageError, match="different run"):
        train.run_training(cfg, train_source, test_source, logdir, seed=1, verbose=0)


class _Crash(RuntimeError):
    pass


_CRASH_AT = {"step": None}


def _crashing_npair(context):
    """N-pair whose run dies at a chosen global step (simulated crash)."""
    plan = methods.get_method("npair")(context)

    class CrashCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if _CRASH_AT["step"] is not None and context.global_step() == _CRASH_AT["step"]:
                _CRASH_AT["step"] = None
                raise _Crash("simulated crash")

    plan.callbacks.append(CrashCallback())
    return plan


@pytest.fixture
def crash_method():
    """The test-only method, registered for one test (issue 18: never left in the registry)."""
    methods.register_method("npair_crash_test")(_crashing_npair)
    yield "npair_crash_test"
    methods.unregister_method("npair_crash_test")


def test_crash_mid_epoch_resumes_to_the_same_weights(tmp_path, crash_method):
    """Crash at step 25 (checkpoint at 20): the restart redoes 20→40 and ends
    with exactly the weights of an uninterrupted run."""
    train_source, test_source = digits()
    cfg = tiny_config("npair_crash_test", steps=40, eval_every=0, checkpoint_every=10)
    kwargs = dict(seed=3, tsne_points=0, nn_queries=0, verbose=0)
    train.run_training(cfg, train_source, test_source, str(tmp_path / "straight"), **kwargs)
    _CRASH_AT["step"] = 25
    with pytest.raises(_Crash):
        train.run_training(cfg, train_source, test_source, str(tmp_path / "crashed"), **kwargs)
    manager = CheckpointManager(str(tmp_path / "crashed" / "checkpoints"))
    assert os.path.basename(manager.latest()) == "step-00000020"
    train.run_training(cfg, train_source, test_source, str(tmp_path / "crashed"), **kwargs)
    straight = model_arrays(str(tmp_path / "straight" / "checkpoints" / "step-00000040"))
    resumed = model_arrays(str(tmp_path / "crashed" / "checkpoints" / "step-00000040"))
    for a, b in zip(straight, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Optimizer state (Adam moments, iteration count) came back too.
    with np.load(str(tmp_path / "crashed" / "checkpoints" / "step-00000040" / "optimizer.npz")) as f:
        assert int(f["v00000"]) == 40


@pytest.mark.slow
def test_killed_process_resumes_from_last_checkpoint(tmp_path):
    """SIGKILL a real training process right after its first checkpoint; the
    same command resumes from it and finishes."""
    logdir = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "experiments.train", "--method=npair", "--dataset=digits", "--steps=150",
           "--checkpoint_every=10", "--eval_every=0", "--tsne_points=0", "--nn_queries=0", f"--logdir={logdir}"]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    manager = CheckpointManager(os.path.join(logdir, "checkpoints"))
    deadline = time.time() + 120
    while manager.latest() is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = manager.read_state(manager.latest())["step"]
    assert 10 <= killed_at < 150
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"(step {killed_at})" in done.stdout
    with open(os.path.join(logdir, "results.json")) as f:
        assert json.load(f)["steps"] == 150


@pytest.mark.parametrize("backend", ["jax", pytest.param("tensorflow", marks=pytest.mark.slow)])
def test_command_line_run_on_backend_with_bfloat16(tmp_path, backend):
    """The CLI trains Symm+N-pair end to end on JAX and TF under mixed bfloat16."""
    logdir = str(tmp_path / backend)
    cmd = [sys.executable, "-m", "experiments.train", "--method=symm_npair", "--dataset=digits", "--steps=12",
           "--eval_every=6", "--checkpoint_every=6", "--tsne_points=50", "--nn_queries=2",
           "--mixed_precision=bfloat16", f"--logdir={logdir}"]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    with open(os.path.join(logdir, "results.json")) as f:
        saved = json.load(f)
    assert saved["backend"] == backend and saved["mixed_precision"] == "bfloat16"
    assert [h["step"] for h in saved["history"]] == [0, 6, 12]
    assert 0.0 <= saved["metrics"]["recall@1"] <= 1.0
    losses = [float(v) for _, v in read_events(os.path.join(logdir, "train"))["loss"]]
    assert np.isfinite(losses).all()


@pytest.mark.parametrize(
    "start,total,spe,expected",
    [
        (0, 10, 5, [(0, 0, 5), (1, 5, 5)]),
        (0, 12, 5, [(0, 0, 5), (1, 5, 5), (2, 10, 2)]),
        (3, 12, 5, [(0, 3, 2), (1, 5, 5), (2, 10, 2)]),
        (7, 8, 5, [(1, 7, 1)]),
        (10, 10, 5, []),
        (0, 3, 5, [(0, 0, 3)]),
    ],
)
def test_epoch_segments_are_one_fit_per_epoch(start, total, spe, expected):
    from experiments.trainer import epoch_segments

    segments = epoch_segments(start, total, spe)
    assert segments == expected
    assert sum(n for _, _, n in segments) == total - start
