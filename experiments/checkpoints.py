"""Step checkpoints of a training run, written atomically, for exact resume.

A checkpoint ``<logdir>/checkpoints/step-00001200/`` holds

* ``model.npz`` — every model variable (weights, batch-norm statistics and
  the layers' random-seed states) in ``model.variables`` order;
* ``optimizer.npz`` — every optimizer variable (iteration count, learning
  rate, Adam moments, ...) in ``optimizer.variables`` order;
* ``state.json`` — the global step, the run seed, the resolved config and the
  evaluation history so far.

The sampler position is the global step: methods' batch streams are
deterministic functions of (seed, step) (see ``experiments.methods``). A
checkpoint is written to a temporary directory and renamed into place, so a
run killed while saving leaves the previous checkpoint intact.
"""

import json
import os
import shutil

import keras
import numpy as np

_PREFIX = "step-"


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
            if name.startswith(_PREFIX) and os.path.exists(os.path.join(full, "state.json")):
                steps.append((int(name[len(_PREFIX) :]), full))
        return [p for _, p in sorted(steps)]

    def latest(self):
        found = self.all()
        return found[-1] if found else None

    def save(self, step, model, optimizer, state):
        os.makedirs(self.directory, exist_ok=True)
        final = os.path.join(self.directory, f"{_PREFIX}{int(step):08d}")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        np.savez(os.path.join(tmp, "model.npz"), **_values(model.variables))
        np.savez(os.path.join(tmp, "optimizer.npz"), **_values(optimizer.variables))
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(dict(state, step=int(step)), f, indent=1, default=float)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def read_state(path):
        with open(os.path.join(path, "state.json")) as f:
            return json.load(f)

    @staticmethod
    def restore(path, model, optimizer):
        """Load a checkpoint into ``model`` and a built ``optimizer``; returns its state dict."""
        with np.load(os.path.join(path, "model.npz")) as arrays:
            _assign(model.variables, arrays, "model", path)
        with np.load(os.path.join(path, "optimizer.npz")) as arrays:
            _assign(optimizer.variables, arrays, "optimizer", path)
        return CheckpointManager.read_state(path)
