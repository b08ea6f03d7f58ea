"""Backend-neutral helpers for the loss tests: gradients and float64 on JAX."""

import contextlib

import keras
import numpy as np
from keras import ops


def value_and_gradient(fn, x, dtype="float32", compiled=False):
    """``(fn(x), ∂fn/∂x)`` as numpy arrays, on the active Keras backend.

    ``fn`` maps a ``(B, D)`` tensor to a scalar tensor. ``compiled=True``
    traces it once (``jax.jit`` / ``tf.function``) instead of running op by op
    — much faster on JAX, but value-dependent checks are skipped under tracing.
    """
    backend = keras.backend.backend()
    x = np.asarray(x)
    if backend == "tensorflow":
        import tensorflow as tf

        def run(xt):
            with tf.GradientTape() as tape:
                tape.watch(xt)
                value = fn(xt)
            return value, tape.gradient(value, xt)

        if compiled:
            run = tf.function(run)
        value, grad = run(tf.convert_to_tensor(x, dtype=dtype))
        grad = np.zeros(x.shape) if grad is None else tf.convert_to_tensor(grad).numpy()
        return np.asarray(value.numpy()), np.asarray(grad)
    if backend == "jax":
        import jax

        run = jax.value_and_grad(fn)
        if compiled:
            run = jax.jit(run)
        value, grad = run(ops.convert_to_tensor(x, dtype=dtype))
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
