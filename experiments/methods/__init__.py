"""Training-method plug-ins for the trainer (``experiments/trainer.py``).

A *method* turns an experiment config, the training data and the embedding
model into everything that is specific to one paper's training recipe: the
batch stream, the loss, extra metrics and extra callbacks, and optionally the
work done before each epoch (Smart Mining mines there). The trainer owns
everything else (model, optimizer, distribution, checkpoints and resume,
evaluation, TensorBoard, ``results.json``).

Writing a method::

    from experiments.methods import MethodPlan, register_method

    @register_method("my_method", l2_normalize=True)
    def build_my_method(context):          # context: TrainingContext
        cfg = context.config                # experiments.configs.ExperimentConfig
        def batches(start_step, num_steps=None):
            # (x, y) batches from global step ``start_step`` on; ``num_steps``
            # of them (None: forever). MUST be a deterministic function of
            # (context.seed, start_step): that is how a resumed run restores
            # the sampler position.
            ...
        return MethodPlan(
            train_batches=batches,
            loss=MyLoss(**cfg.loss_kwargs),
            steps_per_epoch=...,            # what an "epoch" is for callbacks
            metrics=[...],                  # compiled with the model (optional)
            callbacks=[...],                # keras callbacks (optional)
            prepare_epoch=None,             # callable(epoch) run before the epoch (optional)
            batch_layout="pk",
        )

A module in this package registers its methods at import; a method defined
elsewhere is registered by importing its module (``train.py --plugins
my.module --method my_method``). ``register_method`` attributes describe the
method to the trainer: ``l2_normalize`` (the digits defaults normalise the
embeddings for distance-based losses) and ``images_per_class`` (a required
K, checked with the other flags).

Contract
--------
``train_batches(start_step, num_steps)`` returns an iterable (a
``tf.data.Dataset`` or a Python generator) of ``num_steps`` batches ``(x, y)``
(endless with ``num_steps=None``): ``x`` a float batch of inputs the model
takes (images after preprocessing, or feature vectors), ``y`` integer class
labels of shape ``(B,)``. It must be reproducible: ``train_batches(s)``
yields exactly the batches that ``train_batches(0)`` yields from its ``s``-th
on.

The trainer runs one ``model.fit`` per epoch (epoch ``e`` covers global steps
``[e·spe, (e+1)·spe)``, ``spe = steps_per_epoch``): it calls
``prepare_epoch(e)`` (when given), then ``train_batches(first, n)`` for the
epoch's remaining steps, then ``fit`` with ``initial_epoch=e``. A run resumed
mid-epoch calls ``prepare_epoch`` and ``on_epoch_begin`` of that epoch again,
so epoch-begin work must be a deterministic function of the model weights and
the epoch index, or restore its result from the checkpoint (below).

Callbacks get ``self.model`` as usual; they may write TensorBoard scalars
through ``context.summary_writer`` (``experiments.summaries.SummaryWriter``,
``writer.scalar(tag, value, step)``) and read the global step from
``context.global_step()`` (the steps finished before the current batch).
Values a method wants logged per epoch (κ, mined share, mining time) can be
put into the ``logs`` of ``on_epoch_end``; every numeric entry of ``logs`` is
written to TensorBoard under ``train/``.

A callback whose decisions depend on earlier epochs (a controller's history,
data chosen at the start of the current epoch) must survive a resume:
give it ``checkpoint_key``, ``checkpoint_state() -> dict`` (JSON values and
numpy arrays) and ``restore_checkpoint_state(state)``; the trainer saves it
with every checkpoint and restores it, in callback order, before training
(``experiments.checkpoints``). ``AdaptiveKappa`` and ``SmartMining`` do.

A method that needs its own data pipeline reads the training split from
``context.train_source``: an :class:`experiments.sources.ImageSource` (a
``symm_keras.data`` split index + preprocessing, for cub/cars196/sop) or an
:class:`experiments.sources.ArraySource` (in-memory features, for the demo and
tests). Both expose ``labels`` (numpy int array of the training split) and
``pk_batches(classes_per_batch, images_per_class, seed, start_step, num_steps)``.
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

    train_batches: Callable[..., Iterable]
    loss: Any
    steps_per_epoch: int
    metrics: list = dataclasses.field(default_factory=list)
    callbacks: list = dataclasses.field(default_factory=list)
    prepare_epoch: Optional[Callable[[int], None]] = None
    batch_layout: str = "pk"
    description: Optional[str] = None

    def __post_init__(self):
        if not callable(self.train_batches):
            raise TypeError("MethodPlan.train_batches must be callable(start_step, num_steps) -> iterable of (x, y)")
        if self.prepare_epoch is not None and not callable(self.prepare_epoch):
            raise TypeError("MethodPlan.prepare_epoch must be None or callable(epoch)")
        if int(self.steps_per_epoch) < 1:
            raise ValueError(f"MethodPlan.steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        self.steps_per_epoch = int(self.steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """A registered method: its plan factory and what the trainer needs to know about it.

    Attributes:
        factory: ``factory(context) -> MethodPlan``.
        l2_normalize: the method trains unit-norm embeddings in its default
            (no table row) settings: distance-based losses with fixed margins.
        images_per_class: the K a batch must have (``None``: any K >= 2).
    """

    factory: Callable[[TrainingContext], MethodPlan]
    l2_normalize: bool = False
    images_per_class: Optional[int] = None


def register_method(name, *, l2_normalize=False, images_per_class=None):
    """Decorator: register ``factory(context) -> MethodPlan`` under ``name`` (see :class:`MethodInfo`)."""

    def decorator(factory):
        if name in _METHODS and _METHODS[name].factory is not factory:
            raise ValueError(f"training method {name!r} is registered twice")
        _METHODS[name] = MethodInfo(factory, bool(l2_normalize), images_per_class)
        return factory

    return decorator


def unregister_method(name):
    """Remove method ``name`` from the registry (test plug-ins clean up after themselves)."""
    _METHODS.pop(name, None)


def _load_plugins():
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available_methods():
    """Sorted names of every registered method (plug-in modules are imported)."""
    _load_plugins()
    return sorted(_METHODS)


def method_info(name):
    """The :class:`MethodInfo` registered under ``name``; clear error listing the choices."""
    _load_plugins()
    if name not in _METHODS:
        raise ValueError(f"unknown --method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def get_method(name):
    """The plan factory registered under ``name``."""
    return method_info(name).factory


def build_plan(name, context):
    """Build and validate the plan of method ``name``."""
    plan = get_method(name)(context)
    if not isinstance(plan, MethodPlan):
        raise TypeError(f"method {name!r} returned {type(plan).__name__}, expected MethodPlan")
    return plan
