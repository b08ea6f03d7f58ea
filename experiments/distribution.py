"""Multi-device training with the loss on the *global* batch.

Hard-pair mining (Symm's hardest-pair pooling, semi-hard selection, lifted
structure's log-sum-exp over all negatives) must see every embedding of the
batch; computing it per replica would only mine inside each replica's slice.

* TensorFlow (``--strategy mirrored``): ``tf.distribute.MirroredStrategy``;
  :class:`symm_keras.distribute.GlobalBatchLoss` all-gathers labels and
  embeddings across replicas before calling the loss (see that module), and
  :class:`symm_keras.distribute.GlobalBatchMetric` does the same for
  batch-layout metrics.
* JAX (``--strategy mirrored``): ``keras.distribution.DataParallel``; the
  train step is one SPMD program over the global (sharded) batch, so the loss
  already sees the whole batch.
"""

import keras

from symm_keras.distribute import GlobalBatchLoss, GlobalBatchMetric  # noqa: F401  (used by train.py)

STRATEGIES = ("default", "mirrored")


def setup_strategy(name, devices=None):
    """Activate ``name`` for the current backend; returns the tf.distribute
    strategy on TensorFlow (``None`` otherwise or for ``default``). A
    ``tf.distribute.Strategy`` instance is returned as it is (one process
    should keep one MirroredStrategy: separate instances can collide in
    their collective-op keys)."""
    if not isinstance(name, str) and hasattr(name, "num_replicas_in_sync"):
        return name
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy(devices=devices)
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return None
    raise ValueError(f"--strategy mirrored is supported on the tensorflow and jax backends, not {backend!r}")
