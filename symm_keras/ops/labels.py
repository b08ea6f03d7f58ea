"""Label handling shared by every loss: validation and pair masks.

``y_true`` is a vector of integer class labels, shape ``(B,)`` or ``(B, 1)``;
``y_pred`` is a ``(B, D)`` embedding matrix. Problems that can be seen from the
static shapes raise ``ValueError`` naming the argument at trace time; problems
that need the label *values* (batch layout) are checked whenever the values are
concrete (eager calls, the first call of a ``Loss``), see
:func:`concrete_value`.
"""

import numpy as np
from keras import ops


def flatten_labels(y_true, y_pred):
    """Return labels as an int32 vector of length ``B`` after checking shapes.

    Raises:
        ValueError: ``y_pred`` is not 2-D, or ``y_true`` is not ``(B,)``/``(B, 1)``
            with the same ``B`` as ``y_pred``.
    """
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
    return ops.cast(y_true, "int32")


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
    value-dependent checks must be skipped (the samplers guarantee the layout).
    """
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # symbolic tensors of any backend refuse conversion
        return None
