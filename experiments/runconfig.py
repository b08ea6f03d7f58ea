"""From flags to a resolved, validated :class:`experiments.configs.ExperimentConfig`.

``--config NAME`` picks a paper-table row; without it the method's default row
for ``--dataset`` is used (digits: the offline demo settings). ``--recipe``
applies one of the row's recipes (``experiments.configs.recipes``), then flags
given on the command line override single settings. Every inconsistency is a
:class:`UsageError` (``train.py: error: …``, exit 2) raised before any work.
"""

import json
import math
import os

from experiments import configs

#: the image datasets of the config registry, and the offline digits task (``experiments/digits.py``).
DATASETS = configs.DATASETS + ("digits",)

#: flags that override the config field of the same name.
CONFIG_FIELDS = (
    "backbone", "backbone_weights", "embedding_dim", "l2_normalize", "input_size",
    "classes_per_batch", "images_per_class", "optimizer", "lr", "momentum", "weight_decay",
    "head_lr_multiplier", "freeze_batchnorm", "freeze_backbone", "eval_every", "checkpoint_every",
)  # fmt: skip
#: config fields that may change when a finished run is extended.
LENGTH_FIELDS = ("steps", "epochs")


class UsageError(ValueError):
    """Unknown or inconsistent flags."""


def default_config_name(method, dataset):
    """The row ``--method M --dataset D`` runs when no ``--config`` is given."""
    names = configs.list_configs(dataset=dataset)
    matches = [n for n in names if configs.get_config(n).method == method]
    preferred = [n for n in matches if n == f"{method}_{dataset}"]
    return (preferred or matches or [None])[0]


def method_defaults(method, dataset):
    """Settings for a method/dataset pair without a table row (our choice: the
    digits demo settings; elsewhere the Symm defaults of ``ExperimentConfig``)."""
    from experiments import methods
    from experiments.configs import ExperimentConfig

    if dataset == "digits":
        return ExperimentConfig(
            name=f"{method}_digits", dataset="digits", method=method, backbone="mlp", backbone_weights=None,
            embedding_dim=32, input_size=64, classes_per_batch=5, images_per_class=2, lr=1e-4,
            head_lr_multiplier=1.0, steps=300, eval_every=100, checkpoint_every=100,
            l2_normalize=methods.method_info(method).l2_normalize, notes="offline demo settings (no paper row)",
        )  # fmt: skip
    return ExperimentConfig(name=f"{method}_{dataset}", dataset=dataset, method=method, steps=2000, eval_every=500)


def _json_dict(key, text):
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--{key} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(parsed, dict):
        raise UsageError(f"--{key} must be a JSON object, got {text!r}")
    return parsed


def resolve_config(values):
    """Merge ``--config`` (or the method default) with explicitly given flags.

    ``values`` maps flag names to the values given on the command line (only
    those actually present). Raises :class:`UsageError` on inconsistencies.
    """
    from experiments import methods
    from experiments.configs import recipes

    name = values.get("config")
    if name:
        try:
            cfg = configs.get_config(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
        for key in ("dataset", "method"):
            if values.get(key) is not None and values[key] != getattr(cfg, key):
                raise UsageError(
                    f"--{key} {values[key]} contradicts --config {name} (which is {key}={getattr(cfg, key)}); "
                    f"drop --{key} or pick another config"
                )
    else:
        method, dataset = values.get("method"), values.get("dataset")
        if method is None or dataset is None:
            raise UsageError("give --config NAME, or both --method and --dataset")
        if dataset not in DATASETS:
            raise UsageError(f"unknown --dataset {dataset!r}; choose from {', '.join(DATASETS)}")
        try:
            methods.method_info(method)
        except ValueError as err:
            raise UsageError(str(err)) from None
        row = default_config_name(method, dataset) if dataset != "digits" else None
        cfg = configs.get_config(row) if row else method_defaults(method, dataset)
    try:
        cfg = recipes.apply_recipe(cfg, values.get("recipe"))
    except ValueError as err:
        raise UsageError(f"--recipe: {err}") from None

    changes = {k: values[k] for k in CONFIG_FIELDS if values.get(k) is not None}
    if changes.get("backbone", cfg.backbone) != cfg.backbone:
        # The row's builder options (GoogLeNet's lrn) and input normalisation are its backbone's:
        # another backbone gets its own (symm_keras.models.backbone_preprocessing).
        changes.update(backbone_kwargs={}, preprocessing=None)
    if changes.get("backbone_weights") == "none":
        changes["backbone_weights"] = None
    for key in ("loss_kwargs", "method_kwargs"):
        if values.get(key) is not None:
            changes[key] = dict(getattr(cfg, key), **_json_dict(key, values[key]))
    if values.get("steps") is not None and values.get("epochs") is not None:
        raise UsageError("give --steps or --epochs, not both")
    if values.get("steps") is not None:
        changes.update(steps=values["steps"], epochs=None)
    if values.get("epochs") is not None:
        changes.update(epochs=values["epochs"], steps=None)

    batch = values.get("batch_size")
    if batch is not None:
        K = changes.get("images_per_class", cfg.images_per_class)
        if "classes_per_batch" in changes:
            if changes["classes_per_batch"] * K != batch:
                raise UsageError(
                    f"--batch_size {batch} != --classes_per_batch {changes['classes_per_batch']} × "
                    f"images_per_class {K}"
                )
        elif batch % K:
            raise UsageError(f"--batch_size {batch} is not a multiple of images_per_class {K}")
        else:
            changes["classes_per_batch"] = batch // K
    if changes:
        cfg = cfg.replace(**changes)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    """Clear errors for values that cannot work (all checks that need no data or model)."""
    from experiments import methods
    from experiments.building import OPTIMIZERS

    try:
        info = methods.method_info(cfg.method)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if (cfg.steps is None) == (cfg.epochs is None):
        raise UsageError(f"config {cfg.name}: exactly one of steps/epochs must be set")
    for key in ("steps", "epochs"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise UsageError(f"--{key} must be >= 1, got {value}")
    for key in ("embedding_dim", "input_size", "classes_per_batch", "images_per_class"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"--{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.classes_per_batch < 2:
        raise UsageError(f"--classes_per_batch must be >= 2 (a batch needs negatives), got {cfg.classes_per_batch}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UsageError(f"--lr must be a finite number > 0, got {cfg.lr}")
    if cfg.optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}")
    for key in ("momentum", "weight_decay", "head_lr_multiplier"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{key} must be a finite number >= 0, got {value}")
    if cfg.eval_every < 0 or cfg.checkpoint_every < 0:
        raise UsageError("--eval_every and --checkpoint_every must be >= 0")
    if info.images_per_class is not None and cfg.images_per_class != info.images_per_class:
        raise UsageError(
            f"--method {cfg.method} uses the P×{info.images_per_class} layout; "
            f"got images_per_class={cfg.images_per_class}"
        )
    if cfg.freeze_backbone and cfg.backbone == "mlp":
        raise UsageError("--freeze_backbone: the digits 'mlp' model has no backbone to freeze (it is all head)")
    if cfg.freeze_backbone and cfg.backbone_weights is None:
        raise UsageError("--freeze_backbone with --backbone_weights none would train a head on random, frozen "
                         "features; give pretrained --backbone_weights or drop --freeze_backbone")  # fmt: skip
    if cfg.dataset == "digits":
        if cfg.backbone != "mlp":
            raise UsageError(f"--dataset digits trains the 'mlp' backbone, got --backbone {cfg.backbone}")
        return
    _validate_image_model(cfg)


def _validate_image_model(cfg):
    from symm_keras import models

    if cfg.backbone == "mlp":
        raise UsageError(f"--backbone mlp is for --dataset digits (feature vectors), not {cfg.dataset}")
    try:
        models.backbone_preprocessing(cfg.backbone)
    except (TypeError, ValueError) as err:
        raise UsageError(f"--backbone: {err}") from None
    weights = cfg.backbone_weights
    if weights not in (None, "imagenet") and not os.path.exists(weights):
        raise UsageError(f"--backbone_weights {weights}: no such file (give 'imagenet', 'none' or a weights file)")
    if cfg.input_size > cfg.resize:
        raise UsageError(
            f"--input_size {cfg.input_size} is larger than the side the images are resized to ({cfg.resize}); "
            "the crop must fit in the resized image"
        )


def config_differences(saved, current):
    """Names of the fields in which two config dicts differ (sorted); a field that ``saved`` lacks
    (added to ``ExperimentConfig`` after it was written, e.g. ``freeze_backbone``) counts as its default."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(configs.ExperimentConfig)
                if f.default is not dataclasses.MISSING}  # fmt: skip
    return sorted(k for k in set(saved) | set(current) if saved.get(k, defaults.get(k)) != current.get(k))
