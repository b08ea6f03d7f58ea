"""A run a user can trust (issue 16): divergence guard, final-evaluation failure,
run-directory lock, damaged checkpoints, Ctrl-C, extension, --restart, exports."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from experiments import rundir, train
from experiments.trainer import Trainer
from experiments.checkpoints import CheckpointManager
from tests.experiments.helpers import REPO, digits, model_arrays, read_events, run_script, tiny_config

QUIET = dict(tsne_points=0, nn_queries=0, verbose=0)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _checkpoints(logdir):
    return CheckpointManager(os.path.join(logdir, "checkpoints")).all()


@pytest.mark.parametrize(
    "method, changes",
    [
        ("npair", {}),
        ("triplet", {}),
        ("semihard", {}),
        ("lifted", {}),
        ("symm_semihard", {}),
        ("symm_lifted", {}),
        ("symm_npair", {}),
        ("damlrrm", {"loss_kwargs": {"boundary": 3.0, "margin": 0.5}}),
        ("smart_mining", {"method_kwargs": {"source": "exact", "triplets_per_batch": 20}}),
    ],
)
def test_divergence_is_stopped_for_every_loss_family(tmp_path, method, changes):
    """lr=1e30: some losses stay finite on non-finite weights (max/min over
    distances); the guard still stops the run naming the step and the
    quantity, and no checkpoint holds a non-finite value."""
    train_source, test_source = digits()
    cfg = tiny_config(method, steps=6, eval_every=0, checkpoint_every=3, lr=1e30, optimizer="sgd", **changes)
    logdir = str(tmp_path / method)
    quantity = r"(the training loss is|the gradients' global norm is|weight \S+ holds)"
    with pytest.raises(train.TrainingDiverged, match=rf"at step \d+: {quantity}"):
        train.run_training(cfg, train_source, test_source, logdir, log_every=100, **QUIET)
    for path in _checkpoints(logdir):
        assert all(np.isfinite(a).all() for a in model_arrays(path)), path
        with np.load(os.path.join(path, "optimizer.npz")) as f:
            assert all(np.isfinite(f[k]).all() for k in f.files), path
    assert not os.path.exists(os.path.join(logdir, "results.json"))


def test_final_evaluation_failure_leaves_the_run_at_evaluate_only(tmp_path, monkeypatch):
    import symm_keras.evaluation

    train_source, test_source = digits()
    cfg = tiny_config("npair", steps=12, eval_every=0, checkpoint_every=5)
    logdir = str(tmp_path / "run")

    def damaged(*args, **kwargs):
        raise OSError("test image 17 is a truncated JPEG")

    with monkeypatch.context() as patch:
        patch.setattr(symm_keras.evaluation, "evaluate_embeddings", damaged)
        with pytest.raises(train.EvaluationFailed, match="truncated JPEG.*checkpointed at step 12.*rerun"):
            train.run_training(cfg, train_source, test_source, logdir, **QUIET)
    assert os.path.basename(_checkpoints(logdir)[-1]) == "step-00000012"
    assert os.path.exists(os.path.join(logdir, "model.keras"))
    before = model_arrays(_checkpoints(logdir)[-1])

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained again")

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "fit", no_training)
        result = train.run_training(cfg, train_source, test_source, logdir, **QUIET)
    assert result["steps"] == 12 and 0.0 <= result["metrics"]["recall@1"] <= 1.0
    for a, b in zip(before, model_arrays(_checkpoints(logdir)[-1])):
        np.testing.assert_array_equal(a, b)


def test_second_process_on_a_run_directory_is_refused_with_the_holders_pid(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom experiments import rundir\n"
         "with rundir.RunLock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n", str(logdir)],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(rundir.RunDirectoryBusy, match=f"pid {holder.pid}"):
            with rundir.RunLock(str(logdir)):
                pass
        train_source, test_source = digits()
        with pytest.raises(train.UsageError, match=f"in use by another training process \\(pid {holder.pid}\\)"):
            train.run_training(tiny_config("npair", steps=2), train_source, test_source, str(logdir), **QUIET)
        assert not (logdir / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    with rundir.RunLock(str(logdir)):  # the lock died with its holder
        assert (logdir / rundir.LOCK_FILE).read_text() == str(os.getpid())


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    train_source, test_source = digits()
    cfg = tiny_config("npair", steps=20, eval_every=0, checkpoint_every=10)
    logdir = str(tmp_path / "run")
    train.run_training(cfg, train_source, test_source, logdir, seed=2, **QUIET)
    straight = model_arrays(os.path.join(logdir, "checkpoints", "step-00000020"))
    latest = os.path.join(logdir, "checkpoints", "step-00000020", "model.npz")
    with open(latest, "r+b") as f:
        f.truncate(os.path.getsize(latest) // 2)
    os.remove(os.path.join(logdir, "results.json"))
    with pytest.warns(UserWarning, match="step-00000020 is damaged.*using the one before it"):
        result = train.run_training(cfg, train_source, test_source, logdir, seed=2, **QUIET)
    assert result["steps"] == 20
    for a, b in zip(straight, model_arrays(os.path.join(logdir, "checkpoints", "step-00000020"))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A half-written step directory of another process (no model.npz) is skipped the same way.
    os.makedirs(os.path.join(logdir, "checkpoints", "step-00000030"))
    shutil.copy(os.path.join(logdir, "checkpoints", "step-00000020", "state.json"),
                os.path.join(logdir, "checkpoints", "step-00000030"))  # fmt: skip
    manager = CheckpointManager(os.path.join(logdir, "checkpoints"))
    model, optimizer = _model_and_optimizer(cfg)
    with pytest.warns(UserWarning, match="step-00000030 is damaged"):
        path, state = manager.restore_latest(model, optimizer)
    assert os.path.basename(path) == "step-00000020" and state["step"] == 20


def _model_and_optimizer(cfg):
    from experiments.building import build_model, build_optimizer

    model = build_model(cfg, digits()[0], seed=0)
    optimizer = build_optimizer(cfg, model, steps_per_epoch=91)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_ctrl_c_writes_a_checkpoint_and_exits_130_with_one_line(tmp_path):
    logdir = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "experiments.train", "--method=npair", "--dataset=digits", "--steps=100000",
           "--checkpoint_every=100000", "--eval_every=0", "--log_every=5", f"--logdir={logdir}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while proc.poll() is None and time.time() < deadline:
        if os.path.isdir(os.path.join(logdir, "train")) and os.listdir(os.path.join(logdir, "train")):
            break  # training scalars are being written
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-1500:] + err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("train.py")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert lines[0].startswith("train.py: interrupted at step ") and "rerun the same command" in lines[0]
    (path,) = _checkpoints(logdir)
    step = CheckpointManager.read_state(path)["step"]
    assert f"interrupted at step {step};" in lines[0] and 0 < step < 100000
    assert all(np.isfinite(a).all() for a in model_arrays(path))


def test_finished_run_extends_to_more_steps_and_refusals_name_the_fields(tmp_path):
    train_source, test_source = digits()
    cfg = tiny_config("npair", steps=20, eval_every=10, checkpoint_every=10)
    logdir = str(tmp_path / "run")
    train.run_training(cfg, train_source, test_source, logdir, seed=1, **QUIET)
    longer = train.run_training(cfg.replace(steps=30), train_source, test_source, logdir, seed=1, **QUIET)
    assert longer["steps"] == 30 and [h["step"] for h in longer["history"]] == [0, 10, 20, 30]
    straight_dir = str(tmp_path / "straight")
    train.run_training(cfg.replace(steps=30), train_source, test_source, straight_dir, seed=1, **QUIET)
    for a, b in zip(model_arrays(os.path.join(straight_dir, "checkpoints", "step-00000030")),
                    model_arrays(os.path.join(logdir, "checkpoints", "step-00000030"))):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(train.UsageError, match=r"differs in lr \(checkpoint 0\.0001, now 0\.5\)"):
        train.run_training(cfg.replace(steps=30, lr=0.5), train_source, test_source, logdir, seed=1, **QUIET)
    with pytest.raises(train.UsageError, match=r"differs in embedding_dim .*, seed \(checkpoint 1, now 2\)"):
        train.run_training(cfg.replace(steps=30, embedding_dim=8), train_source, test_source, logdir, seed=2, **QUIET)
    with pytest.raises(train.UsageError, match="trained to step 30, beyond the 20 steps"):
        train.run_training(cfg, train_source, test_source, logdir, seed=1, **QUIET)


def test_restart_clears_checkpoints_tensorboard_files_and_results(tmp_path):
    train_source, test_source = digits()
    logdir = str(tmp_path / "run")
    train.run_training(tiny_config("npair", steps=12, eval_every=6), train_source, test_source, logdir, log_every=4,
                       **QUIET)  # fmt: skip
    cfg = tiny_config("npair", steps=6, eval_every=3, checkpoint_every=3, lr=1e-3)
    train.run_training(cfg, train_source, test_source, logdir, log_every=2, restart=True, **QUIET)
    assert [s for s, _ in read_events(os.path.join(logdir, "train"))["loss"]] == [2, 4, 6]
    assert [s for s, _ in read_events(os.path.join(logdir, "eval"))["recall@1"]] == [0, 3, 6]
    assert [os.path.basename(p) for p in _checkpoints(logdir)] == ["step-00000003", "step-00000006"]


def test_model_keras_and_evaluate_run_reproduce_the_results(tmp_path):
    """Every run exports model.keras and the test embeddings; a fresh process
    loads the model after ``import symm_keras`` and ``evaluate --run`` gives
    the run's metrics exactly (same embedding path, same settings)."""
    train_source, test_source = digits()
    logdir = str(tmp_path / "run")
    cfg = tiny_config("symm_npair", steps=10, eval_every=0)
    result = train.run_training(cfg, train_source, test_source, logdir, **QUIET)
    saved = np.load(os.path.join(logdir, "test_embeddings.npz"))
    assert saved["embeddings"].shape == (896, 16) and sorted(set(saved["labels"])) == [5, 6, 7, 8, 9]
    code = f"""
import json, numpy as np, keras, symm_keras
model = keras.saving.load_model({os.path.join(logdir, "model.keras")!r})
x = np.load({os.path.join(logdir, "test_embeddings.npz")!r})
print("shape", model.output_shape)
from experiments import evaluate
report = evaluate.run(run_dir={logdir!r}, output_json={str(tmp_path / "eval.json")!r})
"""
    done = run_script(code, env={"KERAS_BACKEND": keras.backend.backend()})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "shape (None, 16)" in done.stdout
    with open(tmp_path / "eval.json") as f:
        report = json.load(f)
    assert report["metrics"] == result["metrics"]
    assert report["source"]["run"] == logdir


def _parse(argv):
    from absl import flags

    fv = flags.FlagValues()
    train.define_flags(fv)
    fv(["train.py"] + argv)
    return fv


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method=npair", "--dataset=digits", "--loss_kwargs", '{"bogus": 1}'], r"takes no argument\(s\) \['bogus'\]"),
        (["--method=no_such", "--dataset=digits"], "unknown --method 'no_such'; available: .*npair"),
        (["--method=npair", "--dataset=cub", "--backbone=nope"], "--backbone: unknown backbone 'nope'"),
        (["--method=npair", "--dataset=cub", "--backbone_weights=/no/such.h5"], "--backbone_weights /no/such.h5: no such"),
        (["--method=npair", "--dataset=cub", "--input_size=300"], r"--input_size 300 is larger than .*\(25\d\)"),
        (["--method=npair", "--dataset=digits", "--lr=inf"], "--lr must be a finite number > 0, got inf"),
        (["--method=npair", "--dataset=digits", "--log_every=0"], "--log_every must be >= 1"),
        (["--method=npair", "--dataset=digits", "--weight_decay=-1"], "--weight_decay must be a finite number >= 0"),
        (["--method=symm_npair", "--dataset=digits", "--images_per_class=3"], "P×2 layout"),
        (["--method=npair", "--dataset=digits", "--plugins=no.such.module"], "--plugins no.such.module"),
        (["--method=npair", "--dataset=cub"], "needs --data_root"),
        (["--method=npair", "--dataset=digits", "--method_kwargs", '{"k": 3}'], "takes no method_kwargs"),
        (["--method=smart_mining", "--dataset=digits", "--method_kwargs", '{"kapa": 3}'], "unknown method_kwargs"),
        (["--method=npair", "--dataset=digits", "--seed=-1"], "--seed must be >= 0"),
    ],
)
def test_invalid_flags_are_usage_errors_before_any_work(tmp_path, argv, message):
    logdir = tmp_path / "run"
    fv = _parse(argv + [f"--logdir={logdir}", "--steps=2"])
    with pytest.raises(train.UsageError, match=message):
        train.main(["train.py"], fv)
    assert not logdir.exists()


def test_unusable_logdir_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for logdir in (blocker, blocker / "sub"):
        with pytest.raises(train.UsageError, match="is a file, not a directory"):
            train.main(["train.py"], _parse(["--method=npair", "--dataset=digits", f"--logdir={logdir}"]))


def test_usage_errors_print_one_line_and_exit_2(tmp_path):
    code = (
        "import subprocess, sys\n"
        "def run(*a):\n"
        "    p = subprocess.run([sys.executable, '-m', 'experiments.train', *a], capture_output=True, text=True)\n"
        "    print('RC', p.returncode); print(p.stderr.strip().splitlines()[-1])\n"
        f"run('--method=npair', '--dataset=digits', '--loss_kwargs={{\"bogus\": 1}}', '--logdir={tmp_path / 'a'}')\n"
        f"run('--method=npair', '--dataset=cub', '--backbone=nope', '--logdir={tmp_path / 'b'}')\n"
    )
    out = run_script(code).stdout
    chunks = out.split("RC ")[1:]
    assert len(chunks) == 2, out
    assert all(c.startswith("2\ntrain.py: error: ") for c in chunks), out
    assert not (tmp_path / "a").exists()


@pytest.fixture
def plugin_module():
    from experiments import methods

    yield "tests.experiments.plugin_method"
    methods.unregister_method("npair_plugin_test")
    sys.modules.pop("tests.experiments.plugin_method", None)


def test_a_plugin_method_runs_from_the_command_line(tmp_path, plugin_module):
    from experiments import methods

    logdir = tmp_path / "run"
    fv = _parse([f"--plugins={plugin_module}", "--method=npair_plugin_test", "--dataset=digits", "--steps=4",
                 "--eval_every=0", "--tsne_points=0", "--nn_queries=0", f"--logdir={logdir}"])  # fmt: skip
    assert train.main(["train.py"], fv) == 0
    with open(logdir / "results.json") as f:
        assert json.load(f)["method"] == "npair_plugin_test"
    assert methods.method_info("npair_plugin_test").l2_normalize


def test_image_run_records_its_preprocessing_and_evaluate_run_reproduces_it(tmp_path):
    """An image dataset (fake CUB, MobileNetV3-Small at 32 px): evaluate --run reads the run's
    own transform and input size (not evaluate's caffe/227 defaults) and gives its metrics exactly."""
    from experiments import evaluate
    from tests.data.fixtures import make_cub

    fake = make_cub(str(tmp_path / "data"), images_per_class=3)  # a gallery of 11 >= Recall@8
    logdir = tmp_path / "run"
    fv = _parse(["--method=npair", "--dataset=cub", f"--data_root={fake.root}", "--backbone=mobilenet_v3_small",
                 "--backbone_weights=none", "--input_size=32", "--embedding_dim=8", "--classes_per_batch=2",
                 "--steps=2", "--eval_every=0", "--tsne_points=0", "--nn_queries=0", "--eval_batch_size=4",
                 f"--logdir={logdir}"])  # fmt: skip
    assert train.main(["train.py"], fv) == 0
    with open(logdir / "run.json") as f:
        recorded = json.load(f)["test_source"]
    assert (recorded["input_size"], recorded["preprocessing"]) == (32, "none")
    with open(logdir / "results.json") as f:
        metrics = json.load(f)["metrics"]
    report = evaluate.run(run_dir=str(logdir))
    assert report["metrics"] == metrics
    path = str(logdir / "model.keras")
    code = f"import keras, symm_keras\nprint('shape', keras.saving.load_model({path!r}).output_shape)"
    done = run_script(code, env={"KERAS_BACKEND": keras.backend.backend()})
    assert "shape (None, 8)" in done.stdout, done.stderr[-3000:]  # the backbone and head layers load


def test_learning_rate_schedule_is_logged_and_continues_on_resume(tmp_path):
    """A recipe's staircase schedule (``lr_schedule``): TensorBoard's learning_rate is the rate of
    each update, and a run resumed (extended) at step 6 goes on where a straight run is."""
    train_source, test_source = digits()
    cfg = tiny_config("npair", steps=6, eval_every=0, checkpoint_every=3, lr=1e-2, optimizer="sgd",
                      lr_schedule={"kind": "staircase", "decay_steps": 4, "decay_rate": 0.5})  # fmt: skip
    logdir, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    train.run_training(cfg, train_source, test_source, logdir, log_every=1, **QUIET)
    train.run_training(cfg.replace(steps=12), train_source, test_source, logdir, log_every=1, **QUIET)
    train.run_training(cfg.replace(steps=12), train_source, test_source, straight, log_every=1, **QUIET)
    logged = read_events(os.path.join(logdir, "train"))["learning_rate"]
    assert [s for s, _ in logged] == list(range(1, 13))
    np.testing.assert_allclose([float(v) for _, v in logged], [1e-2 * 0.5 ** ((s - 1) // 4) for s in range(1, 13)],
                               rtol=1e-6)  # fmt: skip
    for a, b in zip(model_arrays(os.path.join(straight, "checkpoints", "step-00000012")),
                    model_arrays(os.path.join(logdir, "checkpoints", "step-00000012"))):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_recipe_and_show_config(capsys):
    fv = _parse(["--config=symm_npair_cub", "--recipe=paper", "--show_config"])
    assert train.main(["train.py"], fv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["config"] == "symm_npair_cub" and plan["recipe"] == "paper"
    with pytest.raises(train.UsageError, match="--recipe: .*has no recipe 'official'"):
        train.main(["train.py"], _parse(["--method=npair", "--dataset=digits", "--recipe=official", "--logdir=/tmp/x"]))


def test_coupled_weight_decay_recipe_trains_with_the_gradient_norm_recorded(tmp_path):
    """The recipe's coupled L2 decay optimizer (``symm_keras.optimizers``) keeps its state when the
    trainer makes it record the gradient norm; the guard reads a finite norm."""
    train_source, test_source = digits()
    cfg = tiny_config("npair", steps=4, eval_every=0, checkpoint_every=2, weight_decay=1e-3,
                      weight_decay_form="coupled")  # fmt: skip
    trainer = Trainer(cfg, train_source, test_source, str(tmp_path / "run"), seed=0, log_every=1, eval_batch_size=256,
                      visuals=(0, 0, 0), verbose=0)  # fmt: skip
    trainer.build("default", "none")
    assert trainer.optimizer.coupled_weight_decay == 1e-3 and type(trainer.optimizer).__name__.startswith("Gradient")
    trainer.model.fit(trainer.plan.train_batches(0, 2), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    norm = float(keras.ops.convert_to_numpy(trainer.optimizer.gradient_norm.value))
    assert np.isfinite(norm) and norm > 0
