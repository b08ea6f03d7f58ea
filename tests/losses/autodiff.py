"""Backend-neutral helpers for the loss tests: gradients, float64 on JAX, and the
dtype (and tolerance) a backend really computes float64 inputs in."""

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


def computed_dtype(dtype):
    """The float dtype the active backend computes ``dtype`` inputs in, here and now.

    TensorFlow keeps float64; Keras's torch backend, and JAX outside
    :func:`float64_enabled`, promote float64 operands to float32 (Keras's
    ``result_type`` rule), so a float64 test there measures float32 arithmetic.
    Probed with the matrix product every pairwise loss starts from.
    """
    x = ops.ones((1, 1), dtype=dtype)
    return keras.backend.standardize_dtype(ops.matmul(x, x).dtype)


def computed_tolerance(dtype, float32, float64):
    """``float64`` if the backend really computes ``dtype`` inputs in float64, else ``float32``.

    Each test passes the tolerances its own conditioning needs; only the choice
    between them lives here (see :func:`computed_dtype`).
    """
    return float64 if computed_dtype(dtype) == "float64" else float32


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))
