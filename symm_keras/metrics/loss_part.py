"""``LossPart``: one named part of a loss (a term of the sum, or a share of active terms).

Every loss of :mod:`symm_keras.losses` whose value is a sum of named terms
has a ``*_loss_parts`` functional (see :mod:`symm_keras.losses.base`):

| loss | summands (sum = loss) | diagnostics |
| --- | --- | --- |
| ``NPairLoss`` / ``SymmNPairLoss`` | ``softmax``, ``l2`` | |
| ``AngularLoss`` | ``npair`` (``with_npair`` only), ``angular``, ``l2`` | |
| ``SymmAngularLoss`` | ``angular``, ``l2`` | |
| ``TripletLoss``, ``SemiHardTripletLoss``, ``LiftedStructureLoss`` and their Symm forms | ``hinge`` | ``active_share`` |
| ``ContrastiveLoss`` | ``positive``, ``negative`` | ``active_share`` |
| ``SmartMiningLoss`` | ``ratio_triplet``, ``global`` | ``active_share``, ``valid_share`` |
| ``DAMLRRMLoss`` | ``graph_loss``, ``shuffled_loss`` | ``graph_violations``, ... |

:class:`LossPart` evaluates that functional with the loss's own parameters on
each batch (the model output, without gradient) and reports the mean over the
epoch's batches, like Keras's ``loss`` entry, under the name
``<prefix>_<part>`` (``npair_softmax``, ``npair_l2``, ``triplet_active_share``,
...). It costs nothing unless compiled. Metrics made from the same loss
object (:func:`loss_part_metrics`) share one evaluation of the parts per batch:
the first one to see a batch's ``(y_true, y_pred)`` tensors stores the parts
on the loss object and the others reuse them.
"""

import keras
import numpy as np
from keras import ops

_CACHE = "_symm_keras_parts_cache"


def _serialize(loss):
    """``{"registered_name", "config"}`` (the keys ``keras.saving`` uses too)."""
    return {"registered_name": keras.saving.get_registered_name(type(loss)), "config": loss.get_config()}


def _loss_object(loss):
    if isinstance(loss, dict):
        if "registered_name" not in loss or "config" not in loss:
            raise ValueError(f"a serialised loss needs 'registered_name' and 'config', got keys {sorted(loss)}.")
        cls = keras.saving.get_registered_object(loss["registered_name"])
        if cls is None:
            raise ValueError(f"unknown loss {loss['registered_name']!r} (import the module that registers it).")
        loss = cls.from_config(loss["config"])
    if not callable(getattr(loss, "parts", None)) or getattr(type(loss), "parts_fn", None) is None:
        raise ValueError(
            f"loss must be a symm_keras loss that reports parts (has parts_fn), got {type(loss).__name__}."
        )
    return loss


@keras.saving.register_keras_serializable(package="symm_keras")
class LossPart(keras.metrics.Metric):
    """Mean over the epoch's batches of one part of ``loss`` (see the module docstring).

    Args:
        loss: the loss being optimised (a ``symm_keras.losses`` instance with
            ``parts_fn``), or its serialised config.
        part: ``"loss"`` or one of ``loss.part_names``.
        name: metric name; default ``f"{loss.parts_prefix}_{part}"``.

    ``sample_weight`` is ignored: the parts are batch-level quantities.
    """

    def __init__(self, loss, part, name=None, dtype=None):
        loss = _loss_object(loss)
        choices = ("loss",) + tuple(loss.part_names)
        if part not in choices:
            raise ValueError(f"part of {type(loss).__name__} must be one of {choices}, got {part!r}.")
        prefix = type(loss).parts_prefix or loss.name
        super().__init__(name=name or f"{prefix}_{part}", dtype=dtype)
        self.loss = loss
        self.part = part
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def _batch_parts(self, y_true, y_pred):
        """The parts of this batch, shared by the metrics of one loss object.

        Keras passes the same tensors to every compiled metric of a step, so
        identity marks "same batch"; numpy inputs (mutable) are not cached.
        """
        cache = getattr(self.loss, _CACHE, None)
        if cache is not None and cache[0] is y_true and cache[1] is y_pred:
            return cache[2]
        parts = self.loss.parts(y_true, ops.stop_gradient(ops.convert_to_tensor(y_pred)))  # torch: numpy has no detach
        if not isinstance(y_true, np.ndarray) and not isinstance(y_pred, np.ndarray):
            setattr(self.loss, _CACHE, (y_true, y_pred, parts))
        return parts

    def update_state(self, y_true, y_pred, sample_weight=None):
        value = self._batch_parts(y_true, y_pred)[self.part]
        self.total.assign_add(ops.cast(value, "float32"))
        self.count.assign_add(1.0)

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "loss": _serialize(self.loss),
            "part": self.part,
        }


def loss_part_metrics(loss, parts=None):
    """``LossPart`` metrics for ``model.compile(metrics=...)``.

    ``parts=None`` picks every diagnostic and the summands when there are at
    least two (a single summand equals the logged ``loss``). Returns ``[]`` for
    a loss without parts.
    """
    if getattr(type(loss), "parts_fn", None) is None:
        return []
    if parts is None:
        summands = tuple(loss.summands)
        parts = (summands if len(summands) > 1 else ()) + tuple(loss.diagnostics)
    return [LossPart(loss, part) for part in parts]
