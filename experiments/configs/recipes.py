"""Recipes: apply one to a config row, resolve the full training plan, and build its pieces.

A row (``ExperimentConfig``) holds one recipe and offers others as changes
(``recipes``). The Symm rows hold ``official`` (the released code's
training) and offer ``paper``; DAMLRRM rows hold ``paper`` (lr 1e-4, our
reading of the text's "10e−4") and offer ``paper_lr1e-3`` (the text read
literally); Smart Mining rows hold ``paper``.

What ``experiments/train.py`` calls::

    cfg = apply_recipe(get_config(name), recipe)        # recipe=None: the row's own
    print(json.dumps(resolve_recipe(name, recipe)))     # --show_config
    prep = build_preprocessing(cfg, default_mode)       # tf.data image transforms
    optimizer = build_optimizer(cfg, model, steps_per_epoch)
    model.compile(optimizer=optimizer, loss=loss, loss_weights=cfg.loss_weight)
    kappa = build_kappa_schedule(cfg)                   # Smart Mining hand κ, or None
    report = reported_results(cfg, history)             # results.json: last and best R@1
"""

import math

from experiments.configs import ExperimentConfig, get_config

RECIPES = ("official", "paper", "paper_lr1e-3")
# Train / test images of the DML splits (docs/data.md; Song et al. 2016).
TRAIN_IMAGES = {"cub": 5864, "cars196": 8054, "sop": 59551}
TEST_IMAGES = {"cub": 5924, "cars196": 8131, "sop": 60502}
LR_PROBE_STEPS = (0, 4999, 5000, 10000, 15000)
BEST_LABEL = "best Recall@1 over evaluations, chosen on the test set, as the released code's test.py"


def available_recipes(cfg):
    """Recipe names ``cfg`` can run: its own first."""
    return (cfg.recipe,) + tuple(cfg.recipes)


def apply_recipe(cfg, recipe=None):
    """``cfg`` with ``recipe``'s settings (``None`` or the row's own recipe: ``cfg`` unchanged)."""
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"apply_recipe expects an ExperimentConfig, got {type(cfg).__name__}")
    if recipe is None or recipe == cfg.recipe:
        return cfg
    if recipe not in cfg.recipes:
        raise ValueError(f"config {cfg.name!r} has no recipe {recipe!r}; it offers {', '.join(available_recipes(cfg))}"
                         + (" (the released code covers only the Symm paper)" if recipe == "official" else ""))
    spec = cfg.recipes[recipe]
    own = {"changes": {}, "sources": {k: cfg.sources[k] for k in spec.get("sources", {}) if k in cfg.sources},
           "description": f"the row's registered recipe ({cfg.recipe})"}  # fmt: skip
    own["changes"] = {key: getattr(cfg, key) for key in spec.get("changes", {})}
    others = {name: s for name, s in cfg.recipes.items() if name != recipe}
    return cfg.replace(**spec.get("changes", {}), recipe=recipe, recipes={**others, cfg.recipe: own},
                       sources={**cfg.sources, **spec.get("sources", {})})  # fmt: skip


def steps_per_epoch(cfg):
    """Steps of one epoch: Smart Mining's ``ceil(N / triplets_per_batch)``, else ``ceil(N / batch)``."""
    if cfg.method == "smart_mining":
        return math.ceil(TRAIN_IMAGES[cfg.dataset] / int(cfg.method_kwargs.get("triplets_per_batch", 40)))
    return math.ceil(TRAIN_IMAGES[cfg.dataset] / cfg.batch_size)


def total_steps(cfg):
    return cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch(cfg)


def build_lr_schedule(cfg, steps_per_epoch_=None):
    """``cfg.lr`` (constant) or the :mod:`symm_keras.optimizers.schedules` schedule of ``cfg.lr_schedule``."""
    from symm_keras.optimizers import StaircaseDecay, every_epochs

    spec = cfg.lr_schedule
    if spec is None:
        return cfg.lr
    options = {k: v for k, v in spec.items() if k != "kind"}
    if spec.get("kind") == "staircase":
        return StaircaseDecay(cfg.lr, **options)
    if spec.get("kind") == "staircase_epochs":
        return every_epochs(cfg.lr, options["epochs"], steps_per_epoch_ or steps_per_epoch(cfg),
                            options.get("decay_rate", 0.5))  # fmt: skip
    raise ValueError(f"config {cfg.name!r}: lr_schedule kind must be 'staircase' or 'staircase_epochs', got {spec!r}")


def learning_rate_at(cfg, steps=LR_PROBE_STEPS, steps_per_epoch_=None):
    """``{step: learning rate}`` of the base (backbone) learning rate."""
    schedule = build_lr_schedule(cfg, steps_per_epoch_)
    return {str(s): (schedule if isinstance(schedule, float) else schedule.value_at(s)) for s in steps}


def build_optimizer(cfg, model=None, steps_per_epoch_=None):
    """The optimizer of ``cfg``: schedule, weight decay in its form, head multiplier of its kind.

    ``model`` is needed for coupled decay (its batch-norm variables are excluded).
    The head is the ``embedding_head`` layer (``symm_keras.models.head_lr_multipliers``).
    """
    import keras

    from symm_keras.models import head_lr_multipliers, with_lr_multipliers
    from symm_keras.optimizers import with_coupled_decay

    lr = build_lr_schedule(cfg, steps_per_epoch_)
    decoupled = cfg.weight_decay if cfg.weight_decay_form == "decoupled" and cfg.weight_decay else None
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=cfg.momentum, weight_decay=decoupled)
    elif cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=decoupled or 0.0)
    elif cfg.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, weight_decay=decoupled)
    else:
        optimizer = keras.optimizers.Adam(lr, weight_decay=decoupled)
    head = head_lr_multipliers(cfg.head_lr_multiplier) if cfg.head_lr_multiplier != 1.0 else None
    if head and cfg.head_multiplier_kind == "learning_rate":
        optimizer = with_lr_multipliers(optimizer, head)
    coupled = cfg.weight_decay if cfg.weight_decay_form == "coupled" else 0.0
    gradient = head if cfg.head_multiplier_kind == "gradient" else None
    if coupled or gradient:
        if coupled and model is None:
            raise ValueError(f"config {cfg.name!r}: coupled weight decay needs the model (to leave out batch norm)")
        optimizer = with_coupled_decay(optimizer, coupled, model=model, gradient_multipliers=gradient)
    return optimizer


def build_preprocessing(cfg, default_mode):
    """The image transforms of ``cfg`` (``pipeline``; normalisation ``cfg.preprocessing`` or ``default_mode``)."""
    from symm_keras.data.preprocessing import make_preprocessing

    return make_preprocessing(cfg.pipeline, crop_size=cfg.input_size, resize=cfg.resize,
                              mode=cfg.preprocessing or default_mode, bbox_crop=cfg.bbox_crop)  # fmt: skip


def build_kappa_schedule(cfg):
    """Smart Mining's hand κ schedule (``symm_keras.optimizers.KappaSchedule``), or ``None``."""
    from symm_keras.optimizers import KappaSchedule

    return None if cfg.kappa_schedule is None else KappaSchedule(**cfg.kappa_schedule)


def reported_results(cfg, history):
    """The last evaluation and the best-Recall@1 one of ``history`` (``[{"step", "recall@1", ...}]``).

    Returns ``{"last": ..., "best_recall@1": {..., "label": BEST_LABEL}, "reported": cfg.reported_result}``;
    the step-0 evaluation (the untrained embedding) counts as one of them.
    """
    if not history:
        raise ValueError(f"config {cfg.name!r}: no evaluation to report")
    best = max(history, key=lambda h: (h.get("recall@1", float("-inf")), -h["step"]))
    return {"last": dict(history[-1]), "best_recall@1": {**best, "label": BEST_LABEL},
            "reported": cfg.reported_result}  # fmt: skip


def _preprocessing_plan(cfg):
    if cfg.pipeline == "symm_official":
        train = (f"border crop m in [1, floor(0.05 min side)) px, area resize {cfg.resize}x{cfg.resize}, random "
                 f"{cfg.input_size} crop (offsets 0..{cfg.resize - cfg.input_size - 1}), horizontal flip")
        test = f"whole image area-resized to {cfg.input_size}x{cfg.input_size}"
    else:
        train = f"resize {cfg.resize}x{cfg.resize}, random {cfg.input_size} crop, horizontal flip"
        test = f"resize {cfg.resize}x{cfg.resize}, centre {cfg.input_size} crop"
    return {"pipeline": cfg.pipeline, "normalisation": cfg.preprocessing, "input_size": cfg.input_size,
            "resize": cfg.resize, "bbox_crop": cfg.bbox_crop, "train": train, "test": test}  # fmt: skip


def resolve_config(config_name, recipe=None):
    """``get_config(config_name)`` with ``recipe`` applied."""
    return apply_recipe(get_config(config_name), recipe)


def resolve_recipe(config_name, recipe=None):
    """The fully resolved plan of ``config_name`` under ``recipe`` as one JSON-ready dict."""
    cfg = resolve_config(config_name, recipe)
    return plan(cfg)


def plan(cfg):
    """The resolved plan of an (already recipe-applied) config as one JSON-ready dict."""
    spe = steps_per_epoch(cfg)
    kind = cfg.head_multiplier_kind
    effective = cfg.head_lr_multiplier
    if kind == "gradient" and cfg.optimizer in ("adam", "adamw", "rmsprop"):
        effective = 1.0
    return {
        "config": cfg.name,
        "recipe": cfg.recipe,
        "recipes": list(available_recipes(cfg)),
        "paper": cfg.paper, "table": cfg.table, "row": cfg.row, "dataset": cfg.dataset, "method": cfg.method,
        "steps": total_steps(cfg),
        "epochs": cfg.epochs,
        "steps_per_epoch": spe,
        "batch": {"classes_per_batch": cfg.classes_per_batch, "images_per_class": cfg.images_per_class,
                  "batch_size": cfg.batch_size, "layout": f"{cfg.classes_per_batch} classes x {cfg.images_per_class}"},
        "backbone": {"name": cfg.backbone, "weights": cfg.backbone_weights, "kwargs": cfg.backbone_kwargs,
                     "embedding_dim": cfg.embedding_dim, "l2_normalize": cfg.l2_normalize,
                     "freeze_batchnorm": cfg.freeze_batchnorm},
        "optimizer": {"name": cfg.optimizer, "lr": cfg.lr,
                      "momentum": cfg.momentum if cfg.optimizer == "sgd" else None},
        "lr_schedule": cfg.lr_schedule or {"kind": "constant"},
        "lr_at_step": learning_rate_at(cfg, steps_per_epoch_=spe),
        "weight_decay": {"form": cfg.weight_decay_form, "value": cfg.weight_decay,
                         "term": ("value * sum 1/2 ||w||^2 over trainable non-batch-norm variables, in the gradient"
                                  if cfg.weight_decay_form == "coupled" else "decoupled: w -= lr * value * w")},
        "head_multiplier": {"value": cfg.head_lr_multiplier, "kind": kind, "effective": effective,
                            "note": ("Adam normalises the gradient: a constant gradient scale cancels"
                                     if kind == "gradient" and effective != cfg.head_lr_multiplier else "")},
        "preprocessing": _preprocessing_plan(cfg),
        "loss": {"method": cfg.method, "weight": cfg.loss_weight, "kwargs": cfg.loss_kwargs,
                 "method_kwargs": cfg.method_kwargs, "kappa_schedule": cfg.kappa_schedule},
        "evaluation": {"distance": cfg.eval_metric, "eval_every": cfg.eval_every, "at_step_0": True,
                       "recall_ks": list(cfg.resolved_recall_ks())},
        "reported_result": {"primary": cfg.reported_result,
                            "label": BEST_LABEL if cfg.reported_result == "best_recall@1" else "last evaluation",
                            "also": "both the last evaluation and the best Recall@1 are in results.json"},
        "paper_results": cfg.paper_results,
        "sources": cfg.sources,
        "notes": cfg.notes,
    }  # fmt: skip
