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

    def __init__(self, fn, name, reduction="sum_over_batch_size", dtype=None, **params):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._params = dict(params)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._params)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}
        config.update(self._params)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
