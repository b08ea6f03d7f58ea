"""Stateful training callbacks survive a resume (issue 7): a smart_mining run
with the adaptive κ controller, crashed and restarted from its last
checkpoint, mines with the same κ sequence as an uninterrupted run — for a
checkpoint in the middle of an epoch and one at an epoch boundary."""

import json
import os

import keras
import numpy as np
import pytest

from experiments import methods, train
from experiments.checkpoints import CheckpointManager, stateful_callbacks
from tests.experiments.helpers import digits, model_arrays, tiny_config

TRIPLETS_PER_BATCH = 60
STEPS_PER_EPOCH = 16  # ceil(901 digits 0–4 / 60)
EPOCHS = 5


class _Crash(RuntimeError):
    pass


_CRASH_AT = {"step": None}


def _crashing_smart_mining(context):
    """Smart Mining whose run dies at a chosen global step (simulated kill)."""
    plan = methods.get_method("smart_mining")(context)

    class CrashCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if _CRASH_AT["step"] is not None and context.global_step() + 1 == _CRASH_AT["step"]:
                _CRASH_AT["step"] = None
                raise _Crash("simulated crash")

    plan.callbacks.append(CrashCallback())
    return plan


def _cfg(checkpoint_every):
    kwargs = {"source": "exact", "triplets_per_batch": TRIPLETS_PER_BATCH, "random_epochs": 1, "adaptive": True,
              "kappa": 2.0, "target_error": 0.3, "lr_halving_epochs": 0}  # fmt: skip
    return tiny_config("smart_mining_crash_test", steps=None, epochs=EPOCHS, lr=0.05, optimizer="sgd",
                       l2_normalize=True, eval_every=0, checkpoint_every=checkpoint_every, method_kwargs=kwargs)


def _final_state(logdir):
    manager = CheckpointManager(os.path.join(logdir, "checkpoints"))
    return manager.read_state(manager.latest())["callbacks"]


@pytest.fixture(scope="module")
def crash_method():
    """The test-only method, registered for this module only (issue 18: never left in the registry)."""
    methods.register_method("smart_mining_crash_test")(_crashing_smart_mining)
    yield "smart_mining_crash_test"
    methods.unregister_method("smart_mining_crash_test")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, crash_method):
    logdir = str(tmp_path_factory.mktemp("straight"))
    train_source, test_source = digits()
    train.run_training(_cfg(10), train_source, test_source, logdir, seed=5, tsne_points=0, nn_queries=0, verbose=0)
    return logdir


@pytest.mark.parametrize(
    "checkpoint_every, crash_at, resumed_from",
    [(10, 57, 50), (STEPS_PER_EPOCH, 57, 48)],
    ids=["mid_epoch", "epoch_boundary"],
)
def test_killed_smart_mining_run_resumes_with_the_same_kappa_sequence(
    straight_run, tmp_path, checkpoint_every, crash_at, resumed_from
):
    train_source, test_source = digits()
    logdir = str(tmp_path / "crashed")
    cfg = _cfg(checkpoint_every)
    kwargs = dict(seed=5, tsne_points=0, nn_queries=0, verbose=0)
    _CRASH_AT["step"] = crash_at
    with pytest.raises(_Crash):
        train.run_training(cfg, train_source, test_source, logdir, **kwargs)
    manager = CheckpointManager(os.path.join(logdir, "checkpoints"))
    assert os.path.basename(manager.latest()) == f"step-{resumed_from:08d}"
    saved = manager.read_state(manager.latest())["callbacks"]
    assert len(saved["adaptive_kappa"]["pairs"]) >= 1  # epochs 1.. had feedback before the crash
    assert saved["smart_mining"]["epoch"] == resumed_from // STEPS_PER_EPOCH - (resumed_from % STEPS_PER_EPOCH == 0)

    train.run_training(cfg, train_source, test_source, logdir, **kwargs)
    straight, resumed = _final_state(straight_run)["adaptive_kappa"], _final_state(logdir)["adaptive_kappa"]
    kappas = [k for _, k in straight["kappas"]]
    assert len(kappas) == EPOCHS and len(set(kappas[1:])) > 1, kappas  # the controller did move κ
    assert [e for e, _ in resumed["kappas"]] == list(range(EPOCHS))
    np.testing.assert_allclose([k for _, k in resumed["kappas"]], kappas, rtol=1e-6)
    assert [p[0] for p in resumed["pairs"]] == [p[0] for p in straight["pairs"]] == list(range(1, EPOCHS))
    np.testing.assert_allclose(np.array(resumed["pairs"]), np.array(straight["pairs"]), rtol=1e-6)
    final = f"step-{EPOCHS * STEPS_PER_EPOCH:08d}"
    for a, b in zip(model_arrays(os.path.join(straight_run, "checkpoints", final)),
                    model_arrays(os.path.join(logdir, "checkpoints", final))):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fresh_controller_state_would_differ(straight_run):
    """Sanity check of the test above: without the saved history the resumed
    controller starts from the initial κ, which is not the sequence's value."""
    from symm_keras.callbacks.adaptive_kappa import AdaptiveKappa

    state = _final_state(straight_run)["adaptive_kappa"]
    fresh = AdaptiveKappa(target_error=0.3, initial_kappa=2.0, start_epoch=1)
    assert fresh.kappa_for_epoch(4) != pytest.approx(dict(state["kappas"])[4])
    restored = AdaptiveKappa(target_error=0.3, initial_kappa=2.0, start_epoch=1)
    restored.restore_checkpoint_state(json.loads(json.dumps(state)))
    assert restored.checkpoint_state() == state


def test_stateful_callbacks_need_distinct_keys():
    class Stateful(keras.callbacks.Callback):
        checkpoint_key = "same"

        def checkpoint_state(self):
            return {}

        def restore_checkpoint_state(self, state):
            pass

    assert list(stateful_callbacks([Stateful(), keras.callbacks.Callback()])) == ["same"]
    with pytest.raises(ValueError, match="distinct checkpoint_key"):
        stateful_callbacks([Stateful(), Stateful()])
