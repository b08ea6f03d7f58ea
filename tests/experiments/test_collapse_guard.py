"""The trivial-solution guard, the frozen-batch-norm warning and ``--freeze_backbone``."""

import math
import warnings

import keras
import numpy as np
import pytest

from experiments import train
from experiments.building import FrozenBatchNormCollapseWarning, build_model
from experiments.callbacks import StepCounter, TrainingCollapsed, TrivialSolutionGuard
from experiments.runconfig import UsageError, resolve_config
from tests.experiments.helpers import digits, read_events, tiny_config

QUIET = dict(nn_queries=2, nn_k=2, tsne_points=50, verbose=0)


class Recorder:
    """A summary writer that keeps ``(tag, value, step)``."""

    def __init__(self):
        self.scalars = []

    def scalar(self, tag, value, step, run="train"):
        self.scalars.append((tag, float(value), int(step)))


class ShrinkWeights(keras.callbacks.Callback):
    """A constructed collapse: after every batch every weight is multiplied by ``factor``."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def on_train_batch_end(self, batch, logs=None):
        for variable in self.model.trainable_variables:
            variable.assign(variable * self.factor)


def _pk_batch(P=5, K=2, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(P * K, dim)).astype("float32")
    return x, np.repeat(np.arange(P), K).astype("int32")


def _fit_with_guard(shrink):
    from symm_keras.losses import NPairLoss

    keras.utils.set_random_seed(0)
    x, y = _pk_batch()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    loss = NPairLoss()
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss)
    counter, writer = StepCounter(), Recorder()
    guard = TrivialSolutionGuard((x, y), loss, math.log(5), writer, counter, every=2)
    callbacks = [counter, guard] + ([ShrinkWeights(0.3)] if shrink else [])
    model.fit(np.tile(x, (40, 1)), np.tile(y, 40), batch_size=10, epochs=1, shuffle=False, callbacks=callbacks,
              verbose=0)  # fmt: skip
    return guard, writer


def test_guard_stops_a_run_whose_embeddings_shrink_to_zero_naming_step_loss_and_norm():
    with pytest.raises(TrainingCollapsed, match=r"at step \d+: .* vs log P = 1\.6094 .* mean embedding norm"):
        _fit_with_guard(shrink=True)


def test_guard_logs_norm_and_loss_next_to_log_p_and_lets_a_normal_run_finish():
    guard, writer = _fit_with_guard(shrink=False)
    tags = {tag for tag, _, _ in writer.scalars}
    assert tags == {"embedding_norm", "probe_loss", "trivial_loss"}
    assert [s for t, _, s in writer.scalars if t == "embedding_norm"] == list(range(0, 41, 2))
    assert all(v == pytest.approx(math.log(5)) for t, v, _ in writer.scalars if t == "trivial_loss")
    assert guard.collapsed_checks == 0


def test_digits_npair_run_logs_the_norm_and_log_p_and_is_not_stopped(tmp_path):
    train_source, test_source = digits()
    cfg = tiny_config("npair", steps=30, eval_every=0, checkpoint_every=0)
    train.run_training(cfg, train_source, test_source, str(tmp_path), log_every=5, **QUIET)
    events = read_events(str(tmp_path / "train"))
    assert [s for s, _ in events["embedding_norm"]] == [0, 5, 10, 15, 20, 25, 30]
    assert all(float(v) > 0 for _, v in events["embedding_norm"])
    assert float(events["trivial_loss"][0][1]) == pytest.approx(math.log(cfg.classes_per_batch))
    assert float(events["probe_loss"][-1][1]) < math.log(cfg.classes_per_batch) - 0.05


def _image_cfg(**changes):
    cfg = train.method_defaults("npair", "cars196").replace(
        backbone="mobilenet_v2", backbone_weights=None, input_size=32, embedding_dim=8, backbone_kwargs={}
    )
    return cfg.replace(**changes)


def test_frozen_batchnorm_with_trained_backbone_warns_by_name_and_frozen_backbone_does_not():
    with pytest.warns(FrozenBatchNormCollapseWarning, match="docs/reproduction.md"):
        build_model(_image_cfg(freeze_batchnorm=True), None, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrozenBatchNormCollapseWarning)
        build_model(_image_cfg(freeze_batchnorm=True, l2_normalize=True), None, seed=0)
        build_model(_image_cfg(freeze_batchnorm=True, method="triplet"), None, seed=0)
        build_model(_image_cfg(freeze_batchnorm=True, freeze_backbone=True), None, seed=0)


def test_freeze_backbone_leaves_only_the_head_trainable():
    model = build_model(_image_cfg(freeze_backbone=True), None, seed=0)
    trained = build_model(_image_cfg(), None, seed=0)
    assert len(model.trainable_variables) == 2  # the head's kernel and bias
    assert all("embedding" in v.path or "head" in v.path for v in model.trainable_variables), [
        v.path for v in model.trainable_variables
    ]
    assert len(trained.trainable_variables) > 2


@pytest.mark.parametrize(
    "values, message",
    [
        ({"method": "npair", "dataset": "digits", "freeze_backbone": True}, "no backbone to freeze"),
        ({"method": "npair", "dataset": "cars196", "freeze_backbone": True, "backbone_weights": "none"},
         "random, frozen features"),
    ],
)  # fmt: skip
def test_freeze_backbone_bad_combinations_are_usage_errors(values, message):
    with pytest.raises(UsageError, match=message):
        resolve_config(values)


def test_a_checkpoint_written_before_freeze_backbone_existed_still_resumes():
    from experiments.runconfig import config_differences

    current = tiny_config("npair").to_dict()
    saved = {k: v for k, v in current.items() if k != "freeze_backbone"}
    assert config_differences(saved, current) == []
    assert config_differences(saved, dict(current, freeze_backbone=True)) == ["freeze_backbone"]
