"""Experiment configs: one per row of the papers' result tables, runnable by name.

``python -m experiments.train --config symm_npair_cub --data_root DIR`` runs the
row; any flag given explicitly overrides the row's value. A config module
(``experiments/configs/<paper>.py``) registers its rows at import::

    from experiments.configs import ExperimentConfig, register_config

    register_config(ExperimentConfig(
        name="symm_npair_cub", paper="symm", table="Table 1",
        dataset="cub", method="symm_npair", ...,
        paper_results={"nmi": 64.9, "f1": 31.6, "recall@1": 59.2, ...}))

Every module in this package is imported on first lookup, so a new paper's
rows only need a new file. ``paper_results`` are the published numbers (in
percent, as printed) that the end-of-run table puts next to ours.
"""

import dataclasses
import importlib
import pkgutil
from typing import Optional

from symm_keras.evaluation import STANDARD_RECALL_KS

_CONFIGS = {}

DATASETS = ("cub", "cars196", "sop")


@dataclasses.dataclass
class ExperimentConfig:
    """One training recipe (a table row, or the defaults of a method).

    Batch size is ``classes_per_batch * images_per_class`` for P×K methods.
    ``steps`` or ``epochs`` (not both) sets the length; ``head_lr_multiplier``
    scales the learning rate of the embedding head (10× in all three papers);
    ``freeze_batchnorm`` keeps a batch-norm backbone's statistics and scales
    fixed (inference mode), for small batches.
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
    steps: Optional[int] = None
    epochs: Optional[int] = None
    eval_every: int = 0
    checkpoint_every: int = 1000
    recall_ks: Optional[tuple] = None
    loss_kwargs: dict = dataclasses.field(default_factory=dict)
    method_kwargs: dict = dataclasses.field(default_factory=dict)
    paper_results: dict = dataclasses.field(default_factory=dict)
    notes: str = ""

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
    if config.name in _CONFIGS and _CONFIGS[config.name] != config:
        raise ValueError(f"experiment config {config.name!r} is registered twice")
    _CONFIGS[config.name] = config
    return config


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
