"""``symm_keras.distribute``: the loss of the global batch under ``tf.distribute``
(two logical CPU devices, in a subprocess) and the identity without a strategy."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from symm_keras.distribute import GlobalBatchLoss, GlobalBatchMetric
from symm_keras.losses import SymmNPairLoss, TripletLoss
from symm_keras.metrics import SyntheticHardPairRatio
from tests.conftest import REPO_ROOT
from tests.losses.autodiff import to_numpy


def test_identity_without_a_strategy_and_config_round_trip(rng):
    labels = np.repeat(np.arange(4), 2)
    x = rng.normal(size=(8, 5)).astype("float32")
    weights = np.linspace(0.0, 2.0, 8).astype("float32")
    for inner in (SymmNPairLoss(), TripletLoss(reduction="sum")):
        wrapped = GlobalBatchLoss(inner)
        np.testing.assert_allclose(to_numpy(wrapped(labels, x)), to_numpy(inner(labels, x)), rtol=1e-6)
        np.testing.assert_allclose(
            to_numpy(wrapped(labels, x, sample_weight=weights)),
            to_numpy(inner(labels, x, sample_weight=weights)),
            rtol=1e-6,
        )
        restored = keras.losses.deserialize(keras.losses.serialize(wrapped))
        assert type(restored.loss) is type(inner) and restored.loss.get_config() == inner.get_config()
    metric = GlobalBatchMetric(SyntheticHardPairRatio())
    metric.update_state(labels, x)
    reference = SyntheticHardPairRatio()
    reference.update_state(labels, x)
    assert float(metric.result()) == float(reference.result())
    clone = GlobalBatchMetric.from_config(metric.get_config())
    assert clone.metric.get_config() == metric.metric.get_config()


_SCRIPT = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, keras, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from symm_keras.distribute import GlobalBatchLoss, GlobalBatchMetric
from symm_keras.losses import LiftedStructureLoss, SymmNPairLoss
from symm_keras.metrics import SyntheticHardPairRatio

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 8)).astype("float32")
y = np.repeat(np.arange(8), 2).astype("int64")  # P×2 global batch; each replica holds 4 classes
w = np.linspace(0.0, 2.0, 16).astype("float32")

def one_step(strategy, make_loss, weighted):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=GlobalBatchLoss(make_loss()),
                      metrics=[GlobalBatchMetric(SyntheticHardPairRatio())])
    data = (x, y, w) if weighted else (x, y)
    h = model.fit(tf.data.Dataset.from_tensors(data).repeat(), steps_per_epoch=1, epochs=1, verbose=0)
    return h.history["loss"][0], h.history["synthetic_hard_pair_ratio"][0], [v.numpy() for v in model.trainable_variables]

mirrored = tf.distribute.MirroredStrategy(devices=["/cpu:0", "/cpu:1"])
for name, make_loss, weighted in [("symm_npair", SymmNPairLoss, False), ("symm_npair_weighted", SymmNPairLoss, True),
                                  ("lifted_sum", lambda: LiftedStructureLoss(reduction="sum"), False)]:
    single = one_step(tf.distribute.get_strategy(), make_loss, weighted)
    multi = one_step(mirrored, make_loss, weighted)
    print("RESULT", name, single[0], multi[0], single[1], multi[1],
          max(float(np.abs(a - b).max()) for a, b in zip(single[2], multi[2])))
"""


@pytest.mark.backend("tensorflow")  # tf.distribute
def test_mirrored_strategy_trains_on_the_global_batch():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert len(rows) == 3
    for name, single, multi, ratio_single, ratio_multi, weight_diff in rows:
        np.testing.assert_allclose(float(multi), float(single), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(float(ratio_multi), float(ratio_single), rtol=1e-6, err_msg=name)
        assert float(weight_diff) < 1e-5, name
