"""P×K batch methods: the baseline losses and their Symmetrical Synthesis forms.

Each method trains on class-balanced P×K batches (Symm paper: P=64 classes ×
K=2 images = 128) with one loss from ``symm_keras.losses``:

| method | loss (module) | paper |
| --- | --- | --- |
| contrastive | ContrastiveLoss (``contrastive``) | Chopra et al. 2005 |
| triplet / symm_triplet | TripletLoss / SymmTripletLoss | Symm eq. 3 / eq. 4 |
| semihard / symm_semihard | SemiHardTripletLoss / SymmSemiHardTripletLoss | Schroff et al. 2015 / Symm Tables 1–3 † |
| lifted / symm_lifted | LiftedStructureLoss / SymmLiftedStructureLoss | Symm eq. 5 / eq. 6 |
| npair / symm_npair | NPairLoss / SymmNPairLoss | Symm eq. 7 / eq. 8 |
| angular / symm_angular | AngularLoss / SymmAngularLoss | Symm eq. 9 / eq. 10 |

The loss is built as ``LossClass(**config.loss_kwargs)``, so a config row
can choose e.g. ``pairs="paper"`` for the Symm N-pair. Symm methods also
compile ``symm_keras.metrics.SyntheticHardPairRatio`` (paper Fig. 7), set up
like the loss (similarity for N-pair/angular with the loss's ``pairs``,
squared Euclidean for triplet, Euclidean for lifted and L2 semi-hard), so the
share of synthetic points among the selected hardest negatives is logged.
Every method also compiles the loss's parts
(:func:`symm_keras.metrics.loss_part_metrics`): the terms that add up to the
loss when there are several (``npair_softmax`` + ``npair_l2``, ...) and the
share of active hinge terms (``triplet_active_share``, ...); see
docs/training.md for what each scalar means.
An epoch is ``ceil(#train images / batch size)`` steps.
"""

import importlib
import math

from experiments.methods import MethodPlan, register_method


def _distance_of(config):
    """The semi-hard losses' distance: ``"squared-L2"`` or the default L2."""
    return "squared_euclidean" if config.get("distance_metric") == "squared-L2" else "euclidean"


#: method -> (loss module under symm_keras.losses, class name, unit-norm embeddings by default,
#: hard-pair ratio setup ``config -> (metric, pairs)`` for Symm losses, else None).
#: The ratio is pooled over the quantity the loss pools (Symm Sec. 3.2): similarity for
#: N-pair/angular (with the loss's ``pairs``), squared Euclidean for triplet, Euclidean for lifted.
PK_LOSSES = {
    "contrastive": ("contrastive", "ContrastiveLoss", False, None),
    "triplet": ("triplet", "TripletLoss", True, None),
    "semihard": ("semihard_triplet", "SemiHardTripletLoss", True, None),
    "lifted": ("lifted_structure", "LiftedStructureLoss", True, None),
    "npair": ("npair", "NPairLoss", False, None),
    "angular": ("angular", "AngularLoss", False, None),
    "symm_triplet": ("symm_triplet", "SymmTripletLoss", True, lambda c: ("squared_euclidean", "paper")),
    "symm_semihard": ("symm_semihard_triplet", "SymmSemiHardTripletLoss", True, lambda c: (_distance_of(c), "paper")),
    "symm_lifted": ("symm_lifted_structure", "SymmLiftedStructureLoss", True, lambda c: ("euclidean", "paper")),
    "symm_npair": ("symm_npair", "SymmNPairLoss", False, lambda c: ("similarity", c.get("pairs", "official"))),
    "symm_angular": ("symm_angular", "SymmAngularLoss", False, lambda c: ("similarity", c.get("pairs", "official"))),
}


def loss_class(method):
    """The ``EmbeddingLoss`` subclass that ``method`` trains with."""
    module_name, class_name = PK_LOSSES[method][:2]
    return getattr(importlib.import_module(f"symm_keras.losses.{module_name}"), class_name)


def check_layout(method, loss_cls, images_per_class):
    """Reject a K the loss does not support, with a clear message."""
    required = getattr(loss_cls, "images_per_class", None)
    if required is not None and int(required) != int(images_per_class):
        raise ValueError(
            f"--method {method} ({loss_cls.__name__}) needs exactly {required} images per class in a batch, "
            f"got --images_per_class {images_per_class}"
        )
    if images_per_class < 2:
        raise ValueError(f"--method {method} needs >= 2 images per class (positive pairs), got {images_per_class}")


def hard_pair_metric(method, loss):
    """``SyntheticHardPairRatio`` (Symm Fig. 7) configured like ``loss`` (pooled quantity,
    point-set pairs, synthesis parameters); ``None`` for a loss without synthesis."""
    from symm_keras.metrics import SyntheticHardPairRatio

    setup = PK_LOSSES[method][3]
    if setup is None:
        return None
    config = loss.get_config()
    metric, pairs = setup(config)
    synthesis = {k: config[k] for k in ("synthesis_alpha", "synthesis_beta", "formula", "force_norm") if k in config}
    return SyntheticHardPairRatio(metric=metric, pairs=pairs, **synthesis)


def method_metrics(method, loss):
    """The metrics a P×K method compiles: the hard-pair ratio (Symm losses), then the loss parts."""
    from symm_keras.metrics import loss_part_metrics

    ratio = hard_pair_metric(method, loss)
    return ([ratio] if ratio is not None else []) + loss_part_metrics(loss)


def _make_builder(method):
    def build(context):
        cfg = context.config
        cls = loss_class(method)
        check_layout(method, cls, cfg.images_per_class)
        if cfg.method_kwargs:
            raise ValueError(f"--method {method} takes no method_kwargs, got {sorted(cfg.method_kwargs)}")
        loss = cls(**cfg.loss_kwargs)
        source = context.train_source
        P, K, seed = cfg.classes_per_batch, cfg.images_per_class, context.seed

        def batches(start_step, num_steps=None):
            return source.pk_batches(P, K, seed, start_step, num_steps)

        return MethodPlan(
            train_batches=batches,
            loss=loss,
            steps_per_epoch=max(1, math.ceil(len(source) / (P * K))),
            metrics=method_metrics(method, loss),
            batch_layout="pk",
            description=f"{cls.__name__} on {P}x{K} class-balanced batches",
        )

    build.__name__ = f"build_{method}"
    return build


for _method, (_, _, _normalize, _) in PK_LOSSES.items():
    register_method(_method, l2_normalize=_normalize, images_per_class=loss_class(_method).images_per_class)(
        _make_builder(_method)
    )
