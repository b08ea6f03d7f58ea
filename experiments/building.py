"""The model and optimizer of a run, from its resolved config."""

import keras

from experiments.digits import mlp_embedding_model

#: --optimizer name -> keras optimizer class; SGD takes ``momentum``; SGD, Adam
#: and AdamW take ``weight_decay`` (decoupled, Keras's rule).
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
}
PRECISIONS = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def build_model(cfg, train_source, seed):
    """The embedding model: the digits MLP for ``backbone="mlp"``, else a ``symm_keras.models`` backbone + head."""
    if cfg.backbone == "mlp":
        width = 1
        for size in train_source.input_shape:
            width *= int(size)
        model = mlp_embedding_model(width, cfg.embedding_dim, l2_normalize=cfg.l2_normalize, seed=seed)
    else:
        from symm_keras import models

        model = models.build_embedding_model(backbone=cfg.backbone, embedding_dim=cfg.embedding_dim,
                                             l2_normalize=cfg.l2_normalize, weights=cfg.backbone_weights,
                                             input_size=cfg.input_size)  # fmt: skip
    if cfg.freeze_batchnorm:
        freeze_batchnorm(model)
    return model


def freeze_batchnorm(model):
    """Put every BatchNormalization layer in inference mode (Keras 3: a
    non-trainable BN layer uses its moving statistics); returns how many."""
    frozen = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def build_optimizer(cfg, learning_rate=None, gradient_norm=True):
    """The optimizer of ``cfg``: ``learning_rate`` (a float or a
    ``keras.optimizers.schedules.LearningRateSchedule``; default ``cfg.lr``),
    the head's learning-rate multiplier, and (``gradient_norm``) the
    gradients' global norm recorded for the divergence guard."""
    cls = OPTIMIZERS[cfg.optimizer]
    kwargs = {"learning_rate": cfg.lr if learning_rate is None else learning_rate}
    if cfg.optimizer == "sgd":
        kwargs["momentum"] = cfg.momentum
    if cfg.optimizer in ("sgd", "adam", "adamw"):
        kwargs["weight_decay"] = cfg.weight_decay if cfg.optimizer == "adamw" else (cfg.weight_decay or None)
    optimizer = cls(**kwargs)
    if cfg.head_lr_multiplier != 1.0:
        from symm_keras.models import head_lr_multipliers, with_lr_multipliers

        # variables under the "embedding_head" layer (build_embedding_model and the MLP name it so)
        optimizer = with_lr_multipliers(optimizer, head_lr_multipliers(cfg.head_lr_multiplier))
    return track_gradient_norm(optimizer) if gradient_norm else optimizer


class GradientNormMixin:
    """Optimizer mixin: ``gradient_norm`` (a non-trainable optimizer variable)
    holds ``sqrt(Σ‖g‖²)`` of the gradients of the last update."""

    def build(self, variables):
        super().build(variables)
        self.gradient_norm = self.add_variable(shape=(), dtype="float32", initializer="zeros", name="gradient_norm")

    def apply(self, grads, trainable_variables=None):
        squares = [keras.ops.sum(keras.ops.square(keras.ops.cast(g, "float32"))) for g in grads if g is not None]
        self.gradient_norm.assign(keras.ops.sqrt(keras.ops.sum(keras.ops.stack(squares))))
        return super().apply(grads, trainable_variables)


def track_gradient_norm(optimizer):
    """A copy of ``optimizer`` (same class and config) that records the gradients' global norm."""
    cls = type(f"GradientNorm{type(optimizer).__name__}", (GradientNormMixin, type(optimizer)), {})
    return cls.from_config(optimizer.get_config())


def set_precision(mixed_precision):
    """Keras's global dtype policy for ``--mixed_precision`` (``none``, ``float16``, ``bfloat16``)."""
    keras.mixed_precision.set_global_policy(PRECISIONS[mixed_precision])
