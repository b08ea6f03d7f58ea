"""Multi-device training with the loss on the *global* batch.

Hard-pair mining (Symm's hardest-pair pooling, semi-hard selection, lifted
structure's log-sum-exp over all negatives) must see every embedding of the
batch; a loss computed per replica would only mine inside each replica's
slice (and a replica's slice of a P×2 batch may split a class).

* ``tf.distribute`` (e.g. ``MirroredStrategy``): wrap the loss in
  :class:`GlobalBatchLoss`. It all-gathers labels, embeddings and sample
  weights across replicas (``ReplicaContext.all_gather``, with a gradient)
  and calls the loss on the global batch; every replica computes the same
  value, its Keras reduction scaled by 1/replicas, and the summed replica
  gradients are the global-batch gradient. :class:`GlobalBatchMetric` does
  the same for batch-layout metrics (e.g. ``SyntheticHardPairRatio``): every
  replica adds the same global counts, so ratios and means are unchanged.
  Replicas must hold equal slices (``batch_size`` divisible by the replicas).
* ``keras.distribution`` (JAX, ``DataParallel``): the train step is one SPMD
  program over the global, sharded batch, so a loss already sees the whole
  batch; the wrappers are the identity there (and without a strategy), so
  one model definition serves every backend.

Build and compile the model inside ``strategy.scope()``::

    with tf.distribute.MirroredStrategy().scope():
        model.compile(optimizer="adam", loss=GlobalBatchLoss(SymmNPairLoss()),
                      metrics=[GlobalBatchMetric(SyntheticHardPairRatio())])
"""

import keras
from keras import ops

from symm_keras.ops.labels import labels_as_integers


def all_gather_with_gradient(ctx, x):
    """``ctx.all_gather(x, axis=0)`` whose gradient is the replica's slice of the SUM
    over replicas of the upstream gradients (every replica computes the loss on the
    gathered batch, so each contributes to every slice).

    Written out because the built-in gradient cannot take the sparse
    (``IndexedSlices``) gradients that gather-based losses produce.
    """
    import tensorflow as tf  # only reached under a tf.distribute strategy

    @tf.custom_gradient
    def gather(value):
        def grad(upstream):
            total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.convert_to_tensor(upstream))
            n = tf.shape(value)[0]
            start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * n
            return total[start : start + n]

        return ctx.all_gather(value, axis=0), grad

    return gather(x)


def _gather_labels_and_weights(ctx, y_true, sample_weight):
    """Every replica's labels (kept integer) and sample weights, in replica order."""
    y_true = ctx.all_gather(labels_as_integers(y_true), axis=0)
    if sample_weight is not None:
        sample_weight = ctx.all_gather(ops.convert_to_tensor(sample_weight), axis=0)
    return y_true, sample_weight


def _replica_context():
    """The ``tf.distribute`` replica context of a multi-replica step, else ``None``."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def _symbolic_build_pass():
    """True in Keras's symbolic build pass under a multi-replica strategy: it runs
    the loss and metrics once on one replica's slice, outside the replicas, only
    to create variables and infer shapes."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.in_cross_replica_context() and tf.distribute.get_strategy().num_replicas_in_sync > 1


@keras.saving.register_keras_serializable(package="symm_keras")
class GlobalBatchLoss(keras.losses.Loss):
    """``loss`` computed on the all-gathered batch under ``tf.distribute`` (module
    docstring); the identity elsewhere. ``sample_weight`` is gathered too; the
    wrapped loss's own ``reduction`` applies."""

    def __init__(self, loss, name=None, dtype=None):
        super().__init__(name=name or f"global_{loss.name}", dtype=dtype or loss.dtype)
        self.loss = loss

    def __call__(self, y_true, y_pred, sample_weight=None):
        if _symbolic_build_pass():
            # One replica's slice may not be a valid batch layout; a zero of the
            # right dtype builds as well.
            return ops.sum(ops.cast(y_pred, self.dtype)) * 0.0
        ctx = _replica_context()
        if ctx is None:
            return self.loss(y_true, y_pred, sample_weight=sample_weight)
        y_true, sample_weight = _gather_labels_and_weights(ctx, y_true, sample_weight)
        y_pred = all_gather_with_gradient(ctx, y_pred)
        value = self.loss(y_true, y_pred, sample_weight=sample_weight)
        # Keras already scales a mean over per-sample values by 1/replicas
        # (sum_over_batch_size); a batch-level scalar or a "sum" is scaled here,
        # so that the replicas' summed gradients are the global-batch gradient.
        if not (getattr(type(self.loss), "per_sample", True) and self.loss.reduction in ("sum_over_batch_size", "mean")):
            value = value / ctx.num_replicas_in_sync
        return value

    def call(self, y_true, y_pred):
        return self.loss.call(y_true, y_pred)

    def get_config(self):
        return {"loss": keras.saving.serialize_keras_object(self.loss), "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="symm_keras")
class GlobalBatchMetric(keras.metrics.Metric):
    """``metric`` updated with the all-gathered batch under ``tf.distribute`` (module
    docstring); the identity elsewhere."""

    def __init__(self, metric, name=None, dtype=None):
        super().__init__(name=name or metric.name, dtype=dtype)
        self.metric = metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        if _symbolic_build_pass():
            return None  # the wrapped metric's variables already exist
        ctx = _replica_context()
        if ctx is not None:
            y_true, sample_weight = _gather_labels_and_weights(ctx, y_true, sample_weight)
            y_pred = ctx.all_gather(y_pred, axis=0)
        return self.metric.update_state(y_true, y_pred, sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {"metric": keras.saving.serialize_keras_object(self.metric), "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["metric"] = keras.saving.deserialize_keras_object(config["metric"])
        return cls(**config)
