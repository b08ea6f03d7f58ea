"""Batches and backend-agnostic gradients for the Symm loss tests."""

import keras
import numpy as np

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
    """Compile ``fn`` on the current backend as Keras's ``jit_compile`` does.

    TensorFlow and JAX: XLA (``tf.function(jit_compile=True)``, ``jax.jit``),
    where the labels are symbolic. Torch: ``torch.compile`` (dynamo graph
    capture, what Keras's torch trainer uses) with the ``"eager"`` backend, which
    runs the captured graphs without inductor's code generation; arguments are
    passed as torch tensors, as Keras's trainer passes them (dynamo cannot trace
    Keras's ``convert_to_tensor`` of a numpy array). Dynamo breaks the graph at
    every Keras ``ops.max``/``ops.min`` on torch (Keras's own ``isinstance`` on the
    result) and runs the rest as further captured graphs; see
    :func:`torch_graph_breaks`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "torch":
        import torch

        compiled = torch.compile(fn, backend="eager")
        return lambda *args: compiled(*(torch.as_tensor(np.asarray(a)) for a in args))
    raise ValueError(f"no compiled path for the {backend!r} backend (tensorflow, jax, torch)")


def torch_graph_breaks(fn, *args):
    """``[(file, line, reason)]`` of every dynamo graph break of ``torch.compile(fn)(*args)``.

    A break in our code would mean Python reads a traced value (e.g. the labels
    through ``.numpy()``) and runs that part eagerly on the real values.
    """
    import torch

    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*(torch.as_tensor(np.asarray(a)) for a in args))
    return [
        (reason.user_stack[-1].filename, reason.user_stack[-1].lineno, reason.reason.splitlines()[0])
        for reason in explained.break_reasons
    ]
