"""The trainer's Keras callbacks: step counting, scalars, evaluation, divergence guard, checkpoints.

The trainer puts them after the method's callbacks, in this order, so they
see each batch after the method did::

    StepCounter, ScalarLogger, PeriodicEvaluation, DivergenceGuard, TrivialSolutionGuard, StepCheckpoint

They share one :class:`StepCounter` (the global step: batches trained since
the run began, across resumes and ``fit`` calls).
"""

import math
import signal
import threading

import keras
import numpy as np

from symm_keras.callbacks import RetrievalEvaluation


class TrainingDiverged(RuntimeError):
    """A loss, gradient norm or weight became NaN or infinite; no checkpoint holds it."""


class TrainingCollapsed(RuntimeError):
    """The embeddings collapsed: a softmax loss sat at its trivial value ``log P`` while the norm vanished."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C: the run stopped after writing a checkpoint of the last finished step."""


class StepCounter(keras.callbacks.Callback):
    """The global step; ``step`` is the number of batches trained so far."""

    def __init__(self, step=0):
        super().__init__()
        self.step = int(step)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1


def current_learning_rate(optimizer, step):
    """The base learning rate of the update that produced global step ``step``: a schedule's
    value at ``step - 1`` (its ``iterations`` then), else the optimizer's variable."""
    lr = getattr(optimizer, "_learning_rate", None)
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(lr(max(step - 1, 0))))
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class ScalarLogger(keras.callbacks.Callback):
    """Every numeric ``logs`` entry and the learning rate to TensorBoard's ``train`` run.

    Batch values every ``every`` steps and at the last step; the values the
    method's callbacks add at an epoch's end (κ, mined share) at that epoch's
    last step.
    """

    def __init__(self, writer, counter, every, total):
        super().__init__()
        self.writer, self.counter, self.every, self.total = writer, counter, int(every), int(total)
        self._batch_keys = set()

    def on_train_batch_end(self, batch, logs=None):
        step = self.counter.step
        self._batch_keys = set(logs or ())
        if not (self.every and (step % self.every == 0 or step == self.total)):
            return
        for key, value in (logs or {}).items():
            if np.ndim(value) == 0:
                self.writer.scalar(key, float(value), step)
        self.writer.scalar("learning_rate", current_learning_rate(self.model.optimizer, step), step)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if key not in self._batch_keys and np.ndim(value) == 0:
                self.writer.scalar(key, float(value), self.counter.step)


class PeriodicEvaluation(RetrievalEvaluation):
    """:class:`RetrievalEvaluation` of the test split every ``every_n_steps`` global steps.

    Each evaluation goes to TensorBoard's ``eval`` run (tags without prefix),
    to ``history`` (``{"step": s, **metrics}``) and, with ``verbose``, to
    stdout. The last step is left to the trainer's final evaluation
    (:meth:`evaluate_at`, which also returns the embeddings).
    """

    def __init__(self, data, writer, every_n_steps, initial_step, total, history, recall_ks, batch_size, seed,
                 verbose=0, metric="cosine"):  # fmt: skip
        super().__init__(data, every_n_steps=every_n_steps or None, initial_step=initial_step, recall_ks=recall_ks,
                         prefix="", batch_size=batch_size, seed=seed, metric=metric)  # fmt: skip
        self.writer, self.total, self.history, self.print_results = writer, int(total), history, verbose

    def on_epoch_end(self, epoch, logs=None):
        """Nothing: evaluations follow the global step only."""

    def _report(self, index, logs):
        if index < self.total:
            self.evaluate_at(index)

    def evaluate_at(self, step):
        """Evaluate now as global step ``step``; returns ``(result, embeddings, labels)``."""
        from symm_keras.evaluation import evaluate_embeddings

        embeddings, labels = self.embed()
        result = evaluate_embeddings(embeddings, labels, recall_ks=self.recall_ks, **self.evaluate_kwargs)
        metrics = result.as_dict()
        self.results.append((step, result))
        self.history.append({"step": int(step), **metrics})
        for key, value in metrics.items():
            self.writer.scalar(key, value, step, run="eval")
        self.writer.flush()
        if self.print_results:
            keys = ("recall@", "nmi", "f1", "map")
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith(keys))
            print(f"step {step}: {shown}", flush=True)
        return result, embeddings, labels


class DivergenceGuard(keras.callbacks.Callback):
    """Stop with :class:`TrainingDiverged` when the loss, the gradients' global norm or a weight is not finite.

    Checked every ``every`` steps and by :class:`StepCheckpoint` before every
    checkpoint (:meth:`check`), so no checkpoint ever holds a non-finite value.
    The gradient norm is the optimizer's ``gradient_norm`` variable
    (``experiments.building.track_gradient_norm``) when it has one.
    """

    def __init__(self, counter, every):
        super().__init__()
        self.counter, self.every = counter, int(every)

    def on_train_batch_end(self, batch, logs=None):
        if self.every and self.counter.step % self.every == 0:
            self.check(self.counter.step, logs)

    def check(self, step, logs=None):
        model = self.model
        quantities = []
        if logs and "loss" in logs:
            quantities.append(("training loss", logs["loss"]))
        norm = getattr(model.optimizer, "gradient_norm", None)
        if norm is not None:
            quantities.append(("gradients' global norm", norm.value))
        for name, value in quantities:
            value = float(keras.ops.convert_to_numpy(value))
            if not np.isfinite(value):
                self._stop(step, f"the {name} is {value}")
        for variable in model.trainable_variables:
            values = keras.ops.convert_to_numpy(variable.value)
            if not np.all(np.isfinite(values)):
                bad = values[~np.isfinite(values)].ravel()[0]
                self._stop(step, f"weight {variable.path} holds {bad}")

    def _stop(self, step, what):
        raise TrainingDiverged(
            f"training diverged at step {step}: {what}; no checkpoint holds it. "
            "Lower --lr, start from pretrained --backbone_weights, or train in float32."
        )


#: methods whose loss is a softmax cross-entropy over the P classes of a batch (Symm eqs. 7–10): with
#: every embedding equal (all zero) each row's logits are equal and the loss is its trivial value log P.
SOFTMAX_LOSS_METHODS = ("npair", "symm_npair", "angular", "symm_angular")


class TrivialSolutionGuard(keras.callbacks.Callback):
    """Log the mean embedding norm (and the loss next to ``log P``) on a fixed probe batch; stop a collapse.

    Every ``every`` global steps (and when training starts) the model embeds
    ``probe = (x, y)`` (the run's first P×K batch) in inference mode and
    writes ``embedding_norm`` (mean ‖e‖) and, when ``trivial_loss`` is given
    (softmax losses: ``log P``), ``probe_loss`` (``loss(y, e)``) and
    ``trivial_loss`` to TensorBoard's ``train`` run. A check is *collapsed*
    when ``|probe_loss − log P| ≤ tolerance`` while the norm is below
    ``norm_ratio`` × its value at the first check of this process; after
    ``patience`` collapsed checks in a row :class:`TrainingCollapsed` stops
    the run naming the step, the loss against ``log P`` and the norm ratio
    (our choice: stop, not warn: no later step leaves the trivial solution,
    docs/reproduction.md). Checkpoints written before stay.
    """

    def __init__(self, probe, loss, trivial_loss, writer, counter, every, tolerance=0.05, norm_ratio=0.1,
                 patience=3):  # fmt: skip
        super().__init__()
        self.x, self.y = probe
        self.loss, self.trivial_loss, self.writer, self.counter = loss, trivial_loss, writer, counter
        self.every, self.tolerance, self.norm_ratio, self.patience = int(every), tolerance, norm_ratio, int(patience)
        self.reference_norm, self.collapsed_checks, self.last = None, 0, None

    def on_train_begin(self, logs=None):
        if self.reference_norm is None:
            self.check(self.counter.step)

    def on_train_batch_end(self, batch, logs=None):
        if self.every and self.counter.step % self.every == 0:
            self.check(self.counter.step)

    def measure(self):
        """``(mean embedding norm, loss or None)`` of the probe batch, in inference mode."""
        embeddings = self.model(self.x, training=False)
        norms = keras.ops.sqrt(keras.ops.sum(keras.ops.square(keras.ops.cast(embeddings, "float32")), axis=-1))
        norm = float(keras.ops.convert_to_numpy(keras.ops.mean(norms)))
        if self.trivial_loss is None:
            return norm, None
        return norm, float(keras.ops.convert_to_numpy(self.loss(self.y, keras.ops.cast(embeddings, "float32"))))

    def check(self, step):
        norm, loss = self.measure()
        self.last = (step, norm, loss)
        self.writer.scalar("embedding_norm", norm, step)
        if self.reference_norm is None:
            self.reference_norm = norm
        if loss is None:
            return
        self.writer.scalar("probe_loss", loss, step)
        self.writer.scalar("trivial_loss", self.trivial_loss, step)
        ratio = norm / self.reference_norm if self.reference_norm > 0 else math.inf
        if abs(loss - self.trivial_loss) <= self.tolerance and ratio < self.norm_ratio:
            self.collapsed_checks += 1
        else:
            self.collapsed_checks = 0
        if self.collapsed_checks >= self.patience:
            raise TrainingCollapsed(
                f"training collapsed to the trivial solution at step {step}: the loss on the probe batch is "
                f"{loss:.4f} vs log P = {self.trivial_loss:.4f} and the mean embedding norm is {norm:.4g}, "
                f"{ratio:.3g} of its {self.reference_norm:.4g} at the first check, for {self.patience} checks "
                "in a row (every embedding near zero). See docs/reproduction.md: freeze the whole backbone "
                "(--freeze_backbone), let batch norm train, lower --lr or use --l2_normalize."
            )


class InterruptRequest:
    """While entered (main thread only): Ctrl-C sets :attr:`requested` instead of
    raising; a second Ctrl-C raises ``KeyboardInterrupt`` at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


class StepCheckpoint(keras.callbacks.Callback):
    """Checkpoint every ``every`` steps (before the last, which the trainer writes), and on Ctrl-C.

    ``save(step)`` is the trainer's checkpoint writer; the guard checks the
    weights first. After a Ctrl-C the checkpoint of the finished step is
    written and :class:`TrainingInterrupted` ends ``fit``.
    """

    def __init__(self, save, counter, every, total, guard, interrupt):
        super().__init__()
        self.save, self.counter, self.every, self.total = save, counter, int(every), int(total)
        self.guard, self.interrupt = guard, interrupt

    def on_train_batch_end(self, batch, logs=None):
        step = self.counter.step
        periodic = self.every and step % self.every == 0 and step < self.total
        if periodic or self.interrupt.requested:
            self.model  # on JAX, reading the model attaches the in-flight training state to its variables
            self.guard.check(step, logs)
            path = self.save(step)
            if self.interrupt.requested:
                raise TrainingInterrupted(f"interrupted at step {step}; checkpoint {path}")
