"""The model and optimizer of a run, from its resolved config."""

import warnings

import keras

from experiments.digits import mlp_embedding_model

#: --optimizer names (``experiments.configs.recipes.build_optimizer`` builds them).
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
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
                                             input_size=cfg.input_size, **cfg.backbone_kwargs)  # fmt: skip
    if cfg.freeze_backbone:
        freeze_backbone(model)
    elif cfg.freeze_batchnorm:
        warn_if_collapse_prone(cfg)
    if cfg.freeze_batchnorm:
        freeze_batchnorm(model)
    return model


def freeze_backbone(model):
    """Make the backbone (the nested model of ``symm_keras.models.build_embedding_model``) non-trainable:
    its weights stay and its batch norm runs in inference mode (Keras 3); only the head trains."""
    backbones = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(backbones) != 1:
        raise ValueError(f"freeze_backbone: expected one nested backbone model in {model.name}, found {len(backbones)}")
    backbones[0].trainable = False
    return backbones[0]


class FrozenBatchNormCollapseWarning(UserWarning):
    """Frozen batch norm + trained backbone + Adam + raw embeddings + softmax loss: measured to collapse."""


def warn_if_collapse_prone(cfg):
    """Warn (:class:`FrozenBatchNormCollapseWarning`) for the combination measured to collapse to the
    trivial solution on real images (docs/reproduction.md): batch norm frozen while the backbone's
    weights train under Adam on unnormalised embeddings with a softmax loss (N-pair, angular)."""
    from experiments.callbacks import SOFTMAX_LOSS_METHODS

    if cfg.backbone == "mlp" or cfg.l2_normalize or cfg.optimizer not in ("adam", "adamw"):
        return
    if cfg.method not in SOFTMAX_LOSS_METHODS:
        return
    warnings.warn(
        f"--freeze_batchnorm with a trained {cfg.backbone} backbone, --optimizer {cfg.optimizer} (lr {cfg.lr:g}), "
        f"unnormalised embeddings and the softmax loss of --method {cfg.method}: this combination was measured "
        "to shrink every embedding to zero (loss -> log P, the trivial solution; docs/reproduction.md). The "
        "trainer stops such a run (TrainingCollapsed). Train the head only (--freeze_backbone, measured to learn), "
        "let batch norm train, or pass --l2_normalize.",
        FrozenBatchNormCollapseWarning,
        stacklevel=2,
    )


def freeze_batchnorm(model):
    """Put every BatchNormalization layer in inference mode (Keras 3: a
    non-trainable BN layer uses its moving statistics); returns how many."""
    frozen = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def build_optimizer(cfg, model, steps_per_epoch, gradient_norm=True):
    """The optimizer of ``cfg`` (its recipe's learning-rate schedule, weight decay form and
    head multiplier: ``experiments.configs.recipes.build_optimizer``), recording the gradients'
    global norm for the divergence guard when ``gradient_norm``."""
    from experiments.configs import recipes

    optimizer = recipes.build_optimizer(cfg, model, steps_per_epoch)
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


_GRADIENT_NORM_CLASSES = {}


def track_gradient_norm(optimizer):
    """``optimizer`` (not yet built), made to record the gradients' global norm: its class becomes
    the :class:`GradientNormMixin` subclass of its class, its state (config, excluded variables) stays."""
    cls = type(optimizer)
    if cls not in _GRADIENT_NORM_CLASSES:
        _GRADIENT_NORM_CLASSES[cls] = type(f"GradientNorm{cls.__name__}", (GradientNormMixin, cls), {})
    optimizer.__class__ = _GRADIENT_NORM_CLASSES[cls]
    return optimizer


def set_precision(mixed_precision):
    """Keras's global dtype policy for ``--mixed_precision`` (``none``, ``float16``, ``bfloat16``)."""
    keras.mixed_precision.set_global_policy(PRECISIONS[mixed_precision])
