"""Two logical CPU devices: the loss is the single-device loss of the global batch."""

import pytest

from tests.experiments.helpers import run_script

_COMMON = """
import numpy as np, keras
from experiments.distribution import GlobalBatchLoss, setup_strategy
from experiments.train import mlp_embedding_model
from symm_keras.losses.lifted_structure import LiftedStructureLoss
from symm_keras.losses.symm_npair import SymmNPairLoss

rng = np.random.default_rng(0)
x = rng.normal(size=(16, 8)).astype("float32")
y = np.repeat(np.arange(8), 2).astype("int32")   # P×2 global batch; each replica holds 4 classes
"""

_TF = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + _COMMON + """
def one_step(strategy, cls, gather=True):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = mlp_embedding_model(8, 4, seed=0)
        loss = GlobalBatchLoss(cls()) if gather else cls()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    h = model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    return h.history["loss"][0], [v.numpy() for v in model.trainable_variables]

mirrored = setup_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2
for cls in (SymmNPairLoss, LiftedStructureLoss):
    single_loss, single_w = one_step(tf.distribute.get_strategy(), cls)
    global_loss, global_w = one_step(mirrored, cls)
    local_loss, _ = one_step(mirrored, cls, gather=False)
    print("RESULT", single_loss, global_loss, local_loss,
          max(float(np.abs(a - b).max()) for a, b in zip(single_w, global_w)))

# End to end: train.py under the mirrored strategy with a batch of 5 classes × 2
# (each replica's slice of 5 is no P×2 batch: only the gathered batch is valid).
import sys, tempfile
from experiments import train
tr, te = train.digits_sources()
cfg = train.method_defaults("symm_npair", "digits").replace(steps=6, eval_every=0, checkpoint_every=3)
res = train.run_training(cfg, tr, te, tempfile.mkdtemp(), seed=0, strategy=mirrored, log_every=3,
                         tsne_points=0, nn_queries=0, verbose=0)
print("TRAINED", res["strategy"], res["steps"], res["metrics"]["recall@1"])
"""

_JAX = """
import os
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
""" + _COMMON + """
def one_step():
    keras.utils.set_random_seed(0)
    model = mlp_embedding_model(8, 4, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SymmNPairLoss())
    h = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return h.history["loss"][0], [np.asarray(v) for v in model.trainable_variables]

single_loss, single_w = one_step()
assert len(jax.devices()) == 2
setup_strategy("mirrored")
global_loss, global_w = one_step()
# Per-replica loss for comparison: each device's half of the batch on its own.
keras.distribution.set_distribution(None)
keras.utils.set_random_seed(0)
m = mlp_embedding_model(8, 4, seed=0)
e = m.predict(x, verbose=0)
local_loss = float(np.mean([SymmNPairLoss()(y[:8], e[:8]), SymmNPairLoss()(y[8:], e[8:])]))
print("RESULT", single_loss, global_loss, local_loss,
      max(float(np.abs(a - b).max()) for a, b in zip(single_w, global_w)))
"""


def _check(script, runs):
    proc = run_script(script)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and len(lines) == runs, proc.stdout[-3000:] + proc.stderr[-3000:]
    for line in lines:
        single, global_, local, weight_diff = map(float, line.split()[1:])
        assert global_ == pytest.approx(single, rel=1e-5)  # loss on the global batch
        assert abs(local - single) > 1e-3  # per-replica mining would give another value
        assert weight_diff < 1e-5  # and the same update
    return proc.stdout


def test_mirrored_strategy_loss_is_the_global_batch_loss():
    """Symm+N-pair (hardest-pair pooling) and lifted structure (all negatives);
    then a short train.py run under the strategy."""
    stdout = _check(_TF, runs=2)
    trained = [line.split() for line in stdout.splitlines() if line.startswith("TRAINED")]
    assert trained and trained[0][1:3] == ["mirrored", "6"], stdout[-2000:]


def test_jax_data_parallel_loss_is_the_global_batch_loss():
    _check(_JAX, runs=1)
