"""Training-method plug-ins for ``experiments/train.py``.

A *method* turns an experiment config, the training data and the embedding
model into everything that is specific to one paper's training recipe: the
batch stream, the loss, extra metrics and extra callbacks. ``train.py`` owns
everything else (model, optimizer, distribution, checkpoints and resume,
evaluation, TensorBoard, ``results.json``).

Writing a method::

    from experiments.methods import MethodPlan, register_method

    @register_method("my_method")
    def build_my_method(context):          # context: TrainingContext
        cfg = context.config                # experiments.configs.ExperimentConfig
        def batches(start_step):
            # (x, y) batches from global step ``start_step`` on, forever.
            # MUST be a deterministic function of (context.seed, start_step):
            # that is how a resumed run restores the sampler position.
            ...
        return MethodPlan(
            train_batches=batches,
            loss=MyLoss(**cfg.loss_kwargs),
            steps_per_epoch=...,            # what an "epoch" is for callbacks
            metrics=[...],                  # compiled with the model (optional)
            callbacks=[...],                # keras callbacks (optional)
            batch_layout="pk",
        )

Contract
--------
``train_batches(start_step)`` returns an iterable (a ``tf.data.Dataset`` or a
Python generator) of ``(x, y)``: ``x`` a float batch of inputs the model takes
(images after preprocessing, or feature vectors), ``y`` integer class labels of
shape ``(B,)``. It must not end before the run does (repeat forever) and must
be reproducible: ``train_batches(s)`` yields exactly the batches that
``train_batches(0)`` yields from its ``s``-th on. ``train.py`` calls it again
after every resume and at every epoch-segment boundary with the global step.

``steps_per_epoch`` defines the epoch boundaries seen by Keras callbacks
(``on_epoch_begin``/``on_epoch_end``; epoch ``e`` covers global steps
``[e·spe, (e+1)·spe)``). A run resumed mid-epoch calls ``on_epoch_begin`` of
that epoch again before continuing, so epoch-begin work (re-mining a graph,
re-sampling pools) must be a deterministic function of the model weights and
the epoch index.

Callbacks get ``self.model`` as usual; they may write TensorBoard scalars
through ``context.summary_writer`` (``experiments.summaries.SummaryWriter``,
``writer.scalar(tag, value, step)``) and read the global step from
``context.global_step()``. Values a method wants logged every step (κ,
training error, mining time) can also be put into the Keras ``logs`` dict:
every numeric entry of ``logs`` is written to TensorBoard under ``train/``.

A callback whose decisions depend on earlier epochs (a controller's history,
data chosen at the start of the current epoch) must survive a resume:
give it ``checkpoint_key``, ``checkpoint_state() -> dict`` (JSON values and
numpy arrays) and ``restore_checkpoint_state(state)``; ``train.py`` saves it
with every checkpoint and restores it, in callback order, before ``fit``
(``experiments.checkpoints``). ``AdaptiveKappa`` and ``SmartMining`` do.

A method that needs its own data pipeline reads the training split from
``context.train_source``: an :class:`experiments.sources.ImageSource` (a
``symm_keras.data`` split index + preprocessing, for cub/cars196/sop) or an
:class:`experiments.sources.ArraySource` (in-memory features, for the demo and
tests). Both expose ``labels`` (numpy int array of the training split) and
``pk_batches(classes_per_batch, images_per_class, seed, start_step)``.
"""

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Iterable, Optional

_METHODS = {}


@dataclasses.dataclass
class TrainingContext:
    """What a method gets to build its plan from.

    Attributes:
        config: the resolved ``experiments.configs.ExperimentConfig``.
        train_source: the training split (``ImageSource`` or ``ArraySource``).
        model: the (uncompiled) embedding model ``inputs -> (B, D)``.
        seed: the run seed; batch streams must depend only on it and the step.
        logdir: the run directory (checkpoints, TensorBoard, results).
        summary_writer: TensorBoard writer shared by the run (or ``None``).
        global_step: zero-argument callable returning the current global step.
        strategy: the ``tf.distribute`` strategy when ``--strategy mirrored``
            runs on TensorFlow, else ``None``.
    """

    config: Any
    train_source: Any
    model: Any
    seed: int
    logdir: str
    summary_writer: Any = None
    global_step: Callable[[], int] = lambda: 0
    strategy: Any = None


@dataclasses.dataclass
class MethodPlan:
    """What a method returns (see the module docstring for the contract)."""

    train_batches: Callable[[int], Iterable]
    loss: Any
    steps_per_epoch: int
    metrics: list = dataclasses.field(default_factory=list)
    callbacks: list = dataclasses.field(default_factory=list)
    batch_layout: str = "pk"
    description: Optional[str] = None

    def __post_init__(self):
        if not callable(self.train_batches):
            raise TypeError("MethodPlan.train_batches must be callable(start_step) -> iterable of (x, y)")
        if int(self.steps_per_epoch) < 1:
            raise ValueError(f"MethodPlan.steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        self.steps_per_epoch = int(self.steps_per_epoch)


def register_method(name):
    """Decorator: register ``factory(context) -> MethodPlan`` under ``name``."""

    def decorator(factory):
        if name in _METHODS and _METHODS[name] is not factory:
            raise ValueError(f"training method {name!r} is registered twice")
        _METHODS[name] = factory
        return factory

    return decorator


def _load_plugins():
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available_methods():
    """Sorted names of every registered method (plug-in modules are imported)."""
    _load_plugins()
    return sorted(_METHODS)


def get_method(name):
    """The factory registered under ``name``; clear error listing the choices."""
    _load_plugins()
    if name not in _METHODS:
        raise ValueError(f"unknown --method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def build_plan(name, context):
    """Build and validate the plan of method ``name``."""
    plan = get_method(name)(context)
    if not isinstance(plan, MethodPlan):
        raise TypeError(f"method {name!r} returned {type(plan).__name__}, expected MethodPlan")
    return plan
