"""Multi-device training with the loss on the *global* batch.

Hard-pair mining (Symm's hardest-pair pooling, semi-hard selection, lifted
structure's log-sum-exp over all negatives) must see every embedding of the
batch; computing it per replica would only mine inside each replica's slice.

* TensorFlow (``--strategy mirrored``): ``tf.distribute.MirroredStrategy``;
  :class:`GlobalBatchLoss` all-gathers labels and embeddings across replicas
  (``ReplicaContext.all_gather``, differentiable) before calling the loss, so
  every replica computes the global-batch loss, scaled by 1/replicas; the
  replica gradients are summed, giving the global-batch gradient.
  :class:`GlobalBatchMetric` does the same for batch-layout metrics.
* JAX (``--strategy mirrored``): ``keras.distribution.DataParallel``; the
  train step is one SPMD program over the global (sharded) batch, so the loss
  already sees the whole batch.
"""

import keras

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


def all_gather_with_gradient(ctx, x):
    """``ctx.all_gather(x, axis=0)`` whose gradient is the replica's slice of
    the SUM over replicas of the upstream gradients (every replica computes
    the loss on the gathered batch, so each contributes to every slice).

    Written out because the built-in gradient cannot take the sparse
    (``IndexedSlices``) gradients that gather-based losses produce. Replicas
    must hold equal batch slices (checked by ``train.py``).
    """
    import tensorflow as tf

    @tf.custom_gradient
    def gather(value):
        def grad(upstream):
            total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.convert_to_tensor(upstream))
            n = tf.shape(value)[0]
            start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n
            return total[start : start + n]

        return ctx.all_gather(value, axis=0), grad

    return gather(x)


def _gather_in_replica(y_true, y_pred, with_gradient):
    """All-gather labels and embeddings when inside a multi-replica context."""
    if keras.backend.backend() != "tensorflow":
        return y_true, y_pred, 1
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return y_true, y_pred, 1
    y_true = ctx.all_gather(y_true, axis=0)
    y_pred = all_gather_with_gradient(ctx, y_pred) if with_gradient else ctx.all_gather(y_pred, axis=0)
    return y_true, y_pred, ctx.num_replicas_in_sync


def _symbolic_build_pass():
    """True in Keras's symbolic build pass under a multi-replica strategy: it
    runs the loss and metrics once on one replica's slice, outside the
    replicas, only to create variables and infer shapes."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.in_cross_replica_context() and tf.distribute.get_strategy().num_replicas_in_sync > 1


class GlobalBatchMetric(keras.metrics.Metric):
    """Wrap a batch-layout metric (e.g. ``SyntheticHardPairRatio``) so it sees
    the all-gathered batch under a ``tf.distribute`` strategy. Every replica
    adds the same global counts, so ratios and means are unchanged."""

    def __init__(self, metric, **kwargs):
        super().__init__(name=metric.name, **kwargs)
        self.metric = metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        if _symbolic_build_pass():
            return None  # the wrapped metric's variables already exist
        y_true, y_pred, _ = _gather_in_replica(y_true, y_pred, with_gradient=False)
        return self.metric.update_state(y_true, y_pred)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


@keras.saving.register_keras_serializable(package="symm_keras_experiments")
class GlobalBatchLoss(keras.losses.Loss):
    """Wrap an embedding loss so it is computed on the all-gathered batch
    under a ``tf.distribute`` strategy (identity elsewhere)."""

    def __init__(self, loss, name=None, **kwargs):
        super().__init__(name=name or f"global_{loss.name}", reduction="sum_over_batch_size", **kwargs)
        self.loss = loss

    def call(self, y_true, y_pred):
        if _symbolic_build_pass():
            # One replica's slice may not be a valid batch layout (P×2 split in
            # the middle of a class); a zero of the right dtype builds as well.
            return keras.ops.sum(y_pred) * 0.0
        y_true, y_pred, replicas = _gather_in_replica(y_true, y_pred, with_gradient=True)
        # Keras scales only non-scalar losses by 1/replicas (losses.loss.reduce_values);
        # the embedding losses return the batch mean as a scalar, so scale here:
        # the replicas' gradients are summed.
        loss = self.loss.call(y_true, y_pred)
        return loss / replicas if replicas > 1 else loss

    def get_config(self):
        return {"loss": keras.saving.serialize_keras_object(self.loss), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
