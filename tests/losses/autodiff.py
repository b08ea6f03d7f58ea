"""Backend-neutral helpers for the loss tests: gradients and float64 on JAX."""

import contextlib

import keras
import numpy as np
from keras import ops


def value_and_gradient(fn, x, dtype="float32"):
    """``(fn(x), ∂fn/∂x)`` as numpy arrays, on the active Keras backend.

    ``fn`` maps a ``(B, D)`` tensor to a scalar tensor.
    """
    backend = keras.backend.backend()
    x = np.asarray(x)
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x, dtype=dtype)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(xt)
        grad = tape.gradient(value, xt)
        grad = np.zeros(x.shape) if grad is None else tf.convert_to_tensor(grad).numpy()
        return np.asarray(value.numpy()), np.asarray(grad)
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(ops.convert_to_tensor(x, dtype=dtype))
        return np.asarray(value), np.asarray(grad)
    if backend == "torch":
        import torch

        xt = torch.tensor(x, dtype=getattr(torch, dtype), requires_grad=True)
        value = fn(xt)
        value.backward()
        return value.detach().cpu().numpy(), xt.grad.detach().cpu().numpy()
    raise RuntimeError(f"no gradient helper for backend {backend!r}")


@contextlib.contextmanager
def float64_enabled():
    """Make float64 real on JAX (off by default there); a no-op elsewhere."""
    if keras.backend.backend() == "jax":
        import jax

        with jax.enable_x64(True):
            yield
    else:
        yield


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))
