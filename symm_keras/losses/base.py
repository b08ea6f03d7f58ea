"""The thin ``keras.losses.Loss`` shell shared by every loss in the package.

Each loss module follows Keras's own pattern (``keras/src/losses/losses.py``):
a functional form ``foo_loss(y_true, y_pred, **params)`` that does the math with
``keras.ops`` and returns a scalar, plus a small class::

    @register
    class FooLoss(EmbeddingLoss):
        def __init__(self, margin=0.2, name="foo_loss", **kwargs):
            super().__init__(foo_loss, name=name, margin=margin, **kwargs)

``EmbeddingLoss`` (a plain ``keras.losses.Loss``) stores the parameters, round-trips them through
``get_config`` and always computes in float32 (or float64 when asked), also
under a mixed-precision policy.

Loss parts. A loss whose value is a sum of named terms also has a functional
``foo_loss_parts(y_true, y_pred, **params)`` returning a dict of scalars: the
key ``"loss"`` (exactly the loss value), the terms listed in the class's
``summands`` (they add up to ``"loss"``) and the diagnostics in
``diagnostics`` (e.g. ``active_share``, the share of hinge terms that are
non-zero). The class names it in ``parts_fn``; :meth:`EmbeddingLoss.parts`
evaluates it with the loss's own parameters, and
:class:`symm_keras.metrics.LossPart` logs one entry. The loss itself never
computes the diagnostics.
"""

import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="symm_keras")

_LOW_PRECISION = ("float16", "bfloat16")


def as_float(y_pred):
    """Upcast half-precision embeddings to float32; keep float32/float64."""
    y_pred = ops.convert_to_tensor(y_pred)
    if keras.backend.standardize_dtype(y_pred.dtype) in _LOW_PRECISION:
        return ops.cast(y_pred, "float32")
    if not keras.backend.is_float_dtype(y_pred.dtype):
        return ops.cast(y_pred, "float32")
    return y_pred


def active_share(terms, mask):
    """Share of the hinge ``terms`` selected by ``mask`` that are non-zero (0 if none).

    The "active" (violating) share reported as a loss part; not differentiated.
    """
    terms = ops.stop_gradient(terms)
    mask = ops.logical_and(ops.cast(mask, "bool"), ops.ones_like(terms, dtype="bool"))
    active = ops.logical_and(mask, ops.greater(terms, 0.0))
    count = ops.sum(ops.cast(mask, terms.dtype))
    return ops.sum(ops.cast(active, terms.dtype)) / ops.maximum(count, 1.0)


class EmbeddingLoss(keras.losses.Loss):
    """Base class: ``y_true`` integer labels ``(B,)``/``(B, 1)``, ``y_pred`` ``(B, D)``.

    Args:
        fn: functional form of the loss.
        name: loss name.
        reduction: Keras reduction; the functional forms already return the
            batch mean, so the default leaves the value unchanged.
        dtype: computation dtype; ``None`` means float32 even under a
            mixed-precision policy (Keras losses default to ``floatx``).
        **params: the loss's hyper-parameters, passed to ``fn`` and saved in
            the config.

    Class attributes (the batch contract, read by the shared loss tests):
        batch_layout: ``"pk"`` for class-balanced batches of labelled
            embeddings (other layouts are tested by their owners).
        images_per_class: ``None`` if any number of images per class works,
            else the exact ``K`` the loss requires (a clear error otherwise).
        zero_without_positives: the loss is 0 with zero gradient for a batch
            without any positive pair.
    """

    batch_layout = "pk"
    images_per_class = None
    zero_without_positives = True
    #: ``foo_loss_parts`` functional (``None``: the loss reports no parts).
    parts_fn = None
    #: parts whose sum is the loss value, and extra reported quantities.
    summands = ()
    diagnostics = ()
    #: prefix of the logged names, e.g. ``"npair"`` -> ``npair_softmax``.
    parts_prefix = None

    def __init__(self, fn, name, reduction="sum_over_batch_size", dtype=None, **params):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._params = dict(params)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._params)

    @property
    def part_names(self):
        """Every key :meth:`parts` returns besides ``"loss"``."""
        return tuple(self.summands) + tuple(self.diagnostics)

    def parts(self, y_true, y_pred):
        """Dict of the loss value (``"loss"``) and its parts for one batch.

        Same dtype handling as calling the loss; raises ``ValueError`` for a
        loss without a parts functional.
        """
        parts_fn = type(self).parts_fn
        if parts_fn is None:
            raise ValueError(f"{type(self).__name__} does not report loss parts (no parts_fn).")
        # As keras.losses.Loss.__call__: both converted to the loss dtype.
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        return parts_fn(y_true, y_pred, **self._params)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}
        config.update(self._params)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
