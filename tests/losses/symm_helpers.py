"""Batches and backend-agnostic gradients for the Symm loss tests."""

import keras
import numpy as np
import pytest

from tests.losses.autodiff import value_and_gradient


def pk_batch(rng, classes, dim, kind="random", shuffle=True):
    """A P×2 batch: labels (2P,) and embeddings (2P, dim) as float64 numpy."""
    labels = np.repeat(np.arange(classes) * 3 + 1, 2)
    if kind == "random":
        x = rng.normal(size=(2 * classes, dim))
    elif kind == "clustered":
        centers = rng.normal(size=(classes, dim)) * 3.0
        x = np.repeat(centers, 2, axis=0) + 0.3 * rng.normal(size=(2 * classes, dim))
    elif kind == "unit":
        x = rng.normal(size=(2 * classes, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    else:
        raise ValueError(kind)
    if shuffle:
        order = rng.permutation(2 * classes)
        labels, x = labels[order], x[order]
    return labels, x


def value_and_grad(fn, x):
    """``(fn(x), dfn/dx)`` as numpy on the current Keras backend, in ``x``'s dtype."""
    return value_and_gradient(fn, x, dtype=str(np.asarray(x).dtype))


def jit(fn):
    """Compile ``fn`` with XLA on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    pytest.skip(f"jit helper covers tensorflow and jax, not {backend}")
