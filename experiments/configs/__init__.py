"""Experiment configs: one per row of the papers' result tables, runnable by name.

``python -m experiments.train --config symm_npair_cub --data_root DIR`` runs the
row; any flag given explicitly overrides the row's value. A config module
(``experiments/configs/<paper>.py``) registers its rows at import::

    from experiments.configs import ExperimentConfig, register_config

    register_config(ExperimentConfig(
        name="symm_npair_cub", paper="symm", table="Table 1",
        dataset="cub", method="symm_npair", ...,
        paper_results={"nmi": 63.6, "f1": 32.5, "recall@1": 55.9, ...}))

Every module in this package is imported on first lookup, so a new paper's
rows only need a new file. ``paper_results`` are the published numbers (in
percent, as printed) that the end-of-run table puts next to ours.

A row holds one *recipe* (``recipe``; e.g. ``"official"``, the released code's
training, for the Symm rows) and the others it offers as changes
(``recipes``); ``sources`` names where each setting comes from (paper section,
released-code file and flag, or "our choice"). :mod:`experiments.configs.recipes`
applies a recipe and resolves the full plan (``resolve_recipe``).
"""

import dataclasses
import importlib
import pkgutil
from typing import Optional

from symm_keras.evaluation import STANDARD_RECALL_KS

_CONFIGS = {}

DATASETS = ("cub", "cars196", "sop")
CHOICES = {
    "weight_decay_form": ("decoupled", "coupled"),
    "head_multiplier_kind": ("learning_rate", "gradient"),
    "pipeline": ("paper", "symm_official"),
    "eval_metric": ("cosine", "euclidean"),
    "reported_result": ("last", "best_recall@1"),
}


@dataclasses.dataclass
class ExperimentConfig:
    """One training recipe (a table row, or the defaults of a method).

    Batch size is ``classes_per_batch * images_per_class`` for P×K methods.
    ``steps`` or ``epochs`` (not both) sets the length. ``head_lr_multiplier``
    scales the embedding head's learning rate (``head_multiplier_kind=
    "learning_rate"``: DAMLRRM Sec. 4, Smart Mining Sec. 4) or its gradient
    (``"gradient"``: the released Symm code's ``w_fc``, which Adam cancels; the
    Symm paper states no multiplier). ``freeze_batchnorm`` keeps a batch-norm
    backbone's statistics and scales fixed (inference mode), for small batches;
    ``freeze_backbone`` makes the whole backbone non-trainable (head only; our choice,
    docs/reproduction.md: the setting measured to learn on unseen classes).

    Recipe fields: ``lr_schedule`` (``None``: constant ``lr``; ``{"kind":
    "staircase", "decay_steps", "decay_rate", "stop_step", "stop_value"}`` or
    ``{"kind": "staircase_epochs", "epochs", "decay_rate"}``);
    ``weight_decay_form`` ``"decoupled"`` (Keras ``weight_decay``) or
    ``"coupled"`` (``weight_decay · Σ ½‖w‖²`` in the gradient, TF1/Caffe);
    ``pipeline`` ``"paper"`` or ``"symm_official"`` image transforms and
    ``bbox_crop``; ``backbone_kwargs`` for the backbone builder (``lrn``);
    ``loss_weight`` multiplies the loss (the code's ``w_angular``);
    ``eval_metric`` ``"cosine"`` or ``"euclidean"``; ``reported_result``
    ``"last"`` or ``"best_recall@1"`` (the evaluation with the best test R@1);
    ``kappa_schedule`` Smart Mining's hand κ schedule
    (``symm_keras.optimizers.KappaSchedule`` arguments).
    """

    name: str
    dataset: str
    method: str
    paper: str = ""
    table: str = ""
    row: str = ""
    backbone: str = "googlenet_caffe"
    backbone_weights: Optional[str] = "imagenet"
    embedding_dim: int = 512
    l2_normalize: bool = False
    input_size: int = 227
    resize: int = 256
    preprocessing: Optional[str] = None
    classes_per_batch: int = 64
    images_per_class: int = 2
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    head_lr_multiplier: float = 10.0
    freeze_batchnorm: bool = False
    freeze_backbone: bool = False
    steps: Optional[int] = None
    epochs: Optional[int] = None
    eval_every: int = 0
    checkpoint_every: int = 1000
    recall_ks: Optional[tuple] = None
    loss_kwargs: dict = dataclasses.field(default_factory=dict)
    method_kwargs: dict = dataclasses.field(default_factory=dict)
    paper_results: dict = dataclasses.field(default_factory=dict)
    notes: str = ""
    recipe: str = "paper"
    recipes: dict = dataclasses.field(default_factory=dict)
    sources: dict = dataclasses.field(default_factory=dict)
    lr_schedule: Optional[dict] = None
    weight_decay_form: str = "decoupled"
    head_multiplier_kind: str = "learning_rate"
    pipeline: str = "paper"
    bbox_crop: bool = False
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    loss_weight: float = 1.0
    eval_metric: str = "cosine"
    reported_result: str = "last"
    kappa_schedule: Optional[dict] = None

    @property
    def batch_size(self):
        return self.classes_per_batch * self.images_per_class

    def resolved_recall_ks(self):
        if self.recall_ks:
            return tuple(int(k) for k in self.recall_ks)
        return STANDARD_RECALL_KS.get(self.dataset, (1, 2, 4, 8))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)


def register_config(config):
    """Register ``config`` under ``config.name`` (names are unique)."""
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"register_config expects an ExperimentConfig, got {type(config).__name__}")
    if config.dataset not in DATASETS:
        raise ValueError(f"config {config.name!r}: dataset must be one of {DATASETS}, got {config.dataset!r}")
    if config.steps is not None and config.epochs is not None:
        raise ValueError(f"config {config.name!r}: set steps or epochs, not both")
    check_choices(config)
    for recipe, spec in config.recipes.items():
        unknown = set(spec) - {"changes", "sources", "description"}
        bad = set(spec.get("changes", {})) - {f.name for f in dataclasses.fields(ExperimentConfig)}
        if unknown or bad or recipe == config.recipe:
            raise ValueError(f"config {config.name!r}: recipe {recipe!r} has unknown keys {sorted(unknown | bad)} "
                             f"or repeats the row's own recipe {config.recipe!r}")  # fmt: skip
    if config.name in _CONFIGS and _CONFIGS[config.name] != config:
        raise ValueError(f"experiment config {config.name!r} is registered twice")
    _CONFIGS[config.name] = config
    return config


def check_choices(config):
    """A clear error for a recipe field outside its choices (:data:`CHOICES`)."""
    for key, choices in CHOICES.items():
        if getattr(config, key) not in choices:
            raise ValueError(f"config {config.name!r}: {key} must be one of {choices}, got {getattr(config, key)!r}")


def _load_modules():
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def list_configs(paper=None, dataset=None, table=None):
    """Names of the registered configs, optionally filtered."""
    _load_modules()
    return sorted(
        name
        for name, c in _CONFIGS.items()
        if (paper is None or c.paper == paper)
        and (dataset is None or c.dataset == dataset)
        and (table is None or c.table == table)
    )


def get_config(name):
    """The config registered as ``name``; clear error with close matches."""
    _load_modules()
    if name not in _CONFIGS:
        import difflib

        close = difflib.get_close_matches(name, list(_CONFIGS), n=5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown --config {name!r}{hint}; list them with --list_configs")
    return _CONFIGS[name]
