"""Multi-device training with the loss on the *global* batch.

Hard-pair mining (Symm's hardest-pair pooling, semi-hard selection, lifted
structure's log-sum-exp over all negatives) must see every embedding of the
batch; computing it per replica would only mine inside each replica's slice.

* TensorFlow (``--strategy mirrored``): ``tf.distribute.MirroredStrategy``;
  :class:`GlobalBatchLoss` all-gathers labels and embeddings across replicas
  (``ReplicaContext.all_gather``, differentiable) before calling the loss, so
  every replica computes the global-batch loss, scaled by 1/replicas; the
  replica gradients are summed, giving the global-batch gradient.
* JAX (``--strategy mirrored``): ``keras.distribution.DataParallel``; the
  train step is one SPMD program over the global (sharded) batch, so the loss
  already sees the whole batch.
"""

import keras

STRATEGIES = ("default", "mirrored")


def setup_strategy(name, devices=None):
    """Activate ``name`` for the current backend; returns the tf.distribute
    strategy on TensorFlow (``None`` otherwise or for ``default``)."""
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


@keras.saving.register_keras_serializable(package="symm_keras_experiments")
class GlobalBatchLoss(keras.losses.Loss):
    """Wrap an embedding loss so it is computed on the all-gathered batch
    under a ``tf.distribute`` strategy (identity elsewhere)."""

    def __init__(self, loss, name=None, **kwargs):
        super().__init__(name=name or f"global_{loss.name}", reduction="sum_over_batch_size", **kwargs)
        self.loss = loss

    def call(self, y_true, y_pred):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            ctx = tf.distribute.get_replica_context()
            if ctx is not None and ctx.num_replicas_in_sync > 1:
                y_true = ctx.all_gather(y_true, axis=0)
                y_pred = all_gather_with_gradient(ctx, y_pred)
                # Keras scales only non-scalar losses by 1/replicas
                # (losses.loss.reduce_values); the embedding losses return the
                # batch mean as a scalar, so scale here: replica gradients are summed.
                return self.loss.call(y_true, y_pred) / ctx.num_replicas_in_sync
        return self.loss.call(y_true, y_pred)

    def get_config(self):
        return {"loss": keras.saving.serialize_keras_object(self.loss), "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
