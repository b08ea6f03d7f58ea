"""Computation dtype of the losses and metrics: float32, or float64 when asked."""

import keras
from keras import ops

_LOW_PRECISION = ("float16", "bfloat16")


def as_float(y_pred):
    """Upcast half-precision (or integer) embeddings to float32; keep float32/float64.

    float64 stays float64 only where the backend computes in it: JAX needs
    ``jax_enable_x64`` (without it JAX arrays are float32), torch and
    TensorFlow keep float64 tensors as given.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    if keras.backend.standardize_dtype(y_pred.dtype) in _LOW_PRECISION:
        return ops.cast(y_pred, "float32")
    if not keras.backend.is_float_dtype(y_pred.dtype):
        return ops.cast(y_pred, "float32")
    return y_pred
