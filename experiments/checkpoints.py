"""Step checkpoints of a training run, written atomically, for exact resume.

A checkpoint ``<logdir>/checkpoints/step-00001200/`` holds

* ``model.npz`` — every model variable (weights, batch-norm statistics and
  the layers' random-seed states) in ``model.variables`` order;
* ``optimizer.npz`` — every optimizer variable (iteration count, learning
  rate, Adam moments, ...) in ``optimizer.variables`` order;
* ``metrics.npz`` — the compiled metrics' accumulators (``model.metrics_variables``)
  at that step, so an epoch resumed in its middle reports the same epoch
  values (loss, loss parts, training error, ...) as an uninterrupted run
  (not written under a ``tf.distribute`` strategy, whose per-replica metric
  variables do not convert to numpy);
* ``state.json`` — the global step, the run seed, the resolved config, the
  evaluation history so far and, under ``"callbacks"``, the state of every
  stateful training callback;
* ``callbacks.npz`` — the array parts of those callback states.

The sampler position is the global step: methods' batch streams are
deterministic functions of (seed, step) (see ``experiments.methods``).
Callbacks whose decisions depend on what happened earlier in the run (the
adaptive κ controller's history, the triplets Smart Mining mined at the start
of the current epoch) implement ``checkpoint_state() -> dict`` (JSON values
and numpy arrays) and ``restore_checkpoint_state(state)`` and name their
entry with ``checkpoint_key``; :func:`stateful_callbacks` finds them. A
checkpoint is written to a temporary directory and renamed into place, so a
run killed while saving leaves the previous checkpoint intact; a checkpoint
that cannot be read anyway (a truncated file, a missing array) is skipped
with a warning by :meth:`CheckpointManager.restore_latest`, which falls back
to the one before it.
"""

import json
import os
import shutil
import warnings
import zipfile

import keras
import numpy as np

_PREFIX = "step-"
_ARRAY_SEPARATOR = "/"


def _values(variables):
    return {f"v{i:05d}": np.asarray(keras.ops.convert_to_numpy(v.value)) for i, v in enumerate(variables)}


def _assign(variables, arrays, what, path):
    if len(arrays) != len(variables):
        raise ValueError(
            f"checkpoint {path}: {what} has {len(arrays)} variables but the run has {len(variables)}; "
            "it was written by a different model/optimizer (use a new --logdir)"
        )
    for i, v in enumerate(variables):
        value = arrays[f"v{i:05d}"]
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"checkpoint {path}: {what} variable {v.path} has shape {value.shape}, expected {v.shape}")
        v.assign(value)


def stateful_callbacks(callbacks):
    """``{checkpoint_key: callback}`` of the callbacks that carry checkpoint state."""
    found = {}
    for callback in callbacks or ():
        if not (callable(getattr(callback, "checkpoint_state", None))
                and callable(getattr(callback, "restore_checkpoint_state", None))):  # fmt: skip
            continue
        key = getattr(callback, "checkpoint_key", None) or type(callback).__name__
        if key in found:
            raise ValueError(
                f"two training callbacks save checkpoint state under the key {key!r} "
                f"({type(found[key]).__name__} and {type(callback).__name__}); give them distinct checkpoint_key"
            )
        found[key] = callback
    return found


def _split_state(key, state):
    """Split one callback's state into its JSON part and its arrays."""
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint_state() of {key!r} must return a dict, got {type(state).__name__}")
    plain, arrays = {}, {}
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[f"{key}{_ARRAY_SEPARATOR}{name}"] = value
        else:
            plain[name] = value
    return plain, arrays


class CheckpointManager:
    """Save/restore step checkpoints under ``directory``; keeps the last ``keep``."""

    def __init__(self, directory, keep=2):
        self.directory = directory
        self.keep = int(keep)

    def all(self):
        if not os.path.isdir(self.directory):
            return []
        steps = []
        for name in os.listdir(self.directory):
            full = os.path.join(self.directory, name)
            if name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit() and os.path.exists(
                os.path.join(full, "state.json")
            ):
                steps.append((int(name[len(_PREFIX) :]), full))
        return [p for _, p in sorted(steps)]

    def latest(self):
        found = self.all()
        return found[-1] if found else None

    def latest_state(self):
        """``(path, state)`` of the newest checkpoint whose ``state.json`` reads, or ``(None, None)``."""
        for path in reversed(self.all()):
            try:
                return path, self.read_state(path)
            except (OSError, ValueError):
                continue
        return None, None

    def save(self, step, model, optimizer, state, callbacks=()):
        """Write the checkpoint of ``step``; ``callbacks``: the run's callbacks
        (those of :func:`stateful_callbacks` are saved with it)."""
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, f"{_PREFIX}{int(step):08d}")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        np.savez(os.path.join(tmp, "model.npz"), **_values(model.variables))
        np.savez(os.path.join(tmp, "optimizer.npz"), **_values(optimizer.variables))
        try:
            metric_values = _values(model.metrics_variables)
        except (TypeError, ValueError):
            # tf.distribute keeps metric sums in per-replica sync-on-read variables that
            # do not convert to numpy here: no metrics.npz (a mid-epoch resume then
            # reports the resumed part of that epoch only).
            metric_values = None
        if metric_values is not None:
            np.savez(os.path.join(tmp, "metrics.npz"), **metric_values)
        callback_states, callback_arrays = {}, {}
        for key, callback in stateful_callbacks(callbacks).items():
            callback_states[key], arrays = _split_state(key, callback.checkpoint_state())
            callback_arrays.update(arrays)
        np.savez(os.path.join(tmp, "callbacks.npz"), **callback_arrays)
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(dict(state, step=int(step), callbacks=callback_states), f, indent=1, default=float)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def update_state(path, **changes):
        """Replace entries of checkpoint ``path``'s ``state.json`` (atomically), e.g. the history
        once the final evaluation is done."""
        state = dict(CheckpointManager.read_state(path), **changes)
        tmp = os.path.join(path, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, default=float)
        os.replace(tmp, os.path.join(path, "state.json"))

    @staticmethod
    def read_state(path):
        with open(os.path.join(path, "state.json")) as f:
            return json.load(f)

    @staticmethod
    def read(path):
        """Every array and the state of checkpoint ``path``, read in full (so damage shows here)."""
        contents = {"state": CheckpointManager.read_state(path)}
        for name in ("model", "optimizer", "callbacks"):
            with np.load(os.path.join(path, f"{name}.npz")) as f:
                contents[name] = {key: f[key] for key in f.files}
        return contents

    def restore_latest(self, model, optimizer, callbacks=()):
        """Restore the newest readable checkpoint; ``(path, state)``, or ``(None, None)`` when there is none.

        A checkpoint that does not read (truncated or missing file) is skipped
        with a warning naming it and the reason; the one before it is used.
        """
        for path in reversed(self.all()):
            try:
                contents = self.read(path)
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
                warnings.warn(f"checkpoint {path} is damaged ({type(err).__name__}: {err}); using the one before it",
                              stacklevel=2)  # fmt: skip
                continue
            return path, self.restore(path, model, optimizer, callbacks, contents=contents)
        return None, None

    @staticmethod
    def restore(path, model, optimizer, callbacks=(), contents=None):
        """Load a checkpoint into ``model``, a built ``optimizer`` and the
        stateful ``callbacks``; returns its state dict.

        A callback without an entry in the checkpoint (a checkpoint written
        before it existed) keeps its fresh state.
        """
        contents = contents or CheckpointManager.read(path)
        _assign(model.variables, contents["model"], "model", path)
        _assign(optimizer.variables, contents["optimizer"], "optimizer", path)
        state = contents["state"]
        saved = state.get("callbacks", {})
        arrays = contents["callbacks"]
        for key, callback in stateful_callbacks(callbacks).items():
            if key not in saved:
                continue
            entry = dict(saved[key])
            prefix = f"{key}{_ARRAY_SEPARATOR}"
            entry.update({name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)})
            callback.restore_checkpoint_state(entry)
        return state

    @staticmethod
    def epoch_metrics_resumer(path, step, steps_per_epoch):
        """Callback that adds the checkpoint's metric accumulators back when the
        run resumes inside an epoch (``step`` not a multiple of ``steps_per_epoch``).

        Keras resets the metrics at every epoch start, and on TensorFlow builds
        the compiled metrics only in the first train step, so the saved sums
        are added after the first resumed batch (put this callback first).
        Every metric the methods compile (Keras's loss mean, ``LossPart``,
        ``TripletTrainingError``, ``SyntheticHardPairRatio``) accumulates sums,
        so ``saved + first batch`` is exactly what an uninterrupted run holds.
        """
        return _EpochMetricsResumer(os.path.join(path, "metrics.npz"), int(step), int(steps_per_epoch))


class _EpochMetricsResumer(keras.callbacks.Callback):
    def __init__(self, path, step, steps_per_epoch):
        super().__init__()
        self.path = path
        self.epoch = step // steps_per_epoch if step % steps_per_epoch else None
        self.armed = False

    def on_epoch_begin(self, epoch, logs=None):
        self.armed = self.epoch is not None and epoch == self.epoch and os.path.exists(self.path)
        self.epoch = None  # only the first (resumed) epoch

    def on_train_batch_end(self, batch, logs=None):
        if not self.armed:
            return
        self.armed = False
        variables = self.model.metrics_variables  # on JAX, reading self.model syncs the training state
        with np.load(self.path) as arrays:
            if len(arrays.files) != len(variables):
                raise ValueError(
                    f"checkpoint {os.path.dirname(self.path)}: metrics.npz has {len(arrays.files)} variables but "
                    f"the compiled metrics have {len(variables)}; it was written by a different run"
                )
            for i, v in enumerate(variables):
                v.assign(keras.ops.add(v.value, arrays[f"v{i:05d}"]))
        if logs is not None:  # later callbacks see this batch's epoch-to-date values
            logs.update(self.model.get_metrics_result())
