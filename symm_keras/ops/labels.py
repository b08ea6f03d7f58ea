"""Label handling shared by every loss: validation and pair masks.

``y_true`` is a vector of integer class labels, shape ``(B,)`` or ``(B, 1)``;
``y_pred`` is a ``(B, D)`` embedding matrix. Problems that can be seen from the
static shapes raise ``ValueError`` naming the argument at trace time. The
losses need no label *values* to be valid: every batch layout is defined, the
same eagerly and compiled (see :mod:`symm_keras.ops.pairs`); the opt-in layout
checks run only when the values are concrete, see :func:`concrete_value`.

Labels keep their integer dtype (int32 or int64), so every int64 label value is
compared exactly. Keras's ``Loss.__call__`` would cast ``y_true`` to float32,
which merges labels above 2**24 (2**24 and 2**24 + 1 are the same float32);
:class:`symm_keras.losses.EmbeddingLoss` therefore never casts labels, and
float labels are only accepted when they are integers that their dtype holds
exactly (checked when concrete, see :func:`labels_as_integers`).
"""

import keras
import numpy as np
from keras import ops
from keras.src.backend.common.symbolic_scope import in_symbolic_scope  # not exported by keras

from symm_keras.ops.host import to_numpy

_EXACT_FLOAT_INTEGERS = {"float16": 2**11, "bfloat16": 2**8, "float32": 2**24, "float64": 2**53}


def flatten_labels(y_true, y_pred):
    """Return labels as an integer vector of length ``B`` after checking shapes.

    The integer dtype is kept (see :func:`labels_as_integers`).

    Raises:
        ValueError: ``y_pred`` is not 2-D, or ``y_true`` is not ``(B,)``/``(B, 1)``
            with the same ``B`` as ``y_pred``.
    """
    y_true = labels_as_integers(y_true)
    pred_shape = tuple(y_pred.shape)
    true_shape = tuple(y_true.shape)
    if len(pred_shape) != 2:
        raise ValueError(
            f"y_pred must be a (batch, embedding_dim) matrix of embeddings, got shape {pred_shape}."
        )
    if len(true_shape) == 2 and true_shape[1] == 1:
        true_shape = true_shape[:1]
        y_true = ops.reshape(y_true, (-1,))
    if len(true_shape) != 1:
        raise ValueError(
            "y_true must hold one integer class label per embedding, shape (batch,) "
            f"or (batch, 1); got shape {tuple(y_true.shape)}."
        )
    if None not in (true_shape[0], pred_shape[0]) and true_shape[0] != pred_shape[0]:
        raise ValueError(
            f"y_true has {true_shape[0]} labels but y_pred has {pred_shape[0]} embeddings."
        )
    return y_true


def labels_as_integers(y_true):
    """``y_true`` as an integer tensor, never rounding a label.

    Integer labels keep their dtype. Boolean labels become int32. Float labels
    (e.g. a pipeline that made them float) become integers when their values
    are concrete and exact: whole numbers of magnitude at most ``2**24``
    (float32; ``2**53`` for float64), else ``ValueError``; under tracing they
    are cast unchecked (pass integer labels to avoid this).

    On JAX without ``jax_enable_x64`` an int64 array becomes int32 at
    conversion; a concrete numpy label outside the int32 range raises
    ``ValueError`` here instead of wrapping around.
    """
    if isinstance(y_true, (np.ndarray, np.generic, list, tuple, int)):
        y_true = np.asarray(y_true)
        if y_true.dtype.kind in "iu" and y_true.size and keras.backend.backend() == "jax":
            import jax  # the backend in use

            if not jax.config.jax_enable_x64 and (
                y_true.max() > np.iinfo(np.int32).max or y_true.min() < np.iinfo(np.int32).min
            ):
                raise ValueError(
                    "labels outside the int32 range need jax_enable_x64 on the JAX backend "
                    f"(got min {y_true.min()}, max {y_true.max()}); remap them to 0..C-1."
                )
    y_true = ops.convert_to_tensor(y_true)
    dtype = keras.backend.standardize_dtype(y_true.dtype)
    if dtype == "bool":
        return ops.cast(y_true, "int32")
    if "int" in dtype:
        return y_true
    exact = _EXACT_FLOAT_INTEGERS.get(dtype)
    values = concrete_value(y_true)
    if values is not None and values.size:
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"labels must be integers, got non-integer {dtype} values.")
        if exact is not None and np.max(np.abs(values)) > exact:
            raise ValueError(
                f"{dtype} labels above {exact} cannot be told apart (their float values merge); "
                f"pass integer labels (got max |label| {np.max(np.abs(values)):.0f})."
            )
    return ops.cast(y_true, "int32" if dtype != "float64" else "int64")


def same_class_mask(labels, other_labels=None):
    """Boolean ``(B, B')`` matrix, ``True`` where the two labels are equal."""
    other_labels = labels if other_labels is None else other_labels
    return ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(other_labels, 0))


def positive_mask(labels):
    """``True`` for pairs ``(i, j)``, ``i ≠ j``, of the same class."""
    n = ops.shape(labels)[0]
    not_self = ops.logical_not(ops.cast(ops.eye(n), "bool"))
    return ops.logical_and(same_class_mask(labels), not_self)


def negative_mask(labels):
    """``True`` for pairs of different classes."""
    return ops.logical_not(same_class_mask(labels))


def concrete_value(x):
    """``x`` as a numpy array when its values are known now, else ``None``.

    Inside ``jit_compile``/``tf.function``/JAX tracing values are symbolic and
    value-dependent checks must be skipped (the opt-in layout checks are eager only).
    Keras's shape inference (``keras.SymbolicScope``) is skipped too: on torch
    it runs the function on placeholder values, not the batch's.
    """
    if in_symbolic_scope():
        return None
    try:
        return to_numpy(x)
    except Exception:  # symbolic tensors of any backend refuse conversion
        return None
