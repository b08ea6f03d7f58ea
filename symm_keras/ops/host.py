"""Backend tensors to the host, and the ``top_k`` order every backend must share.

``to_numpy`` is ``keras.ops.convert_to_numpy`` except for torch tensors, which
go through ``Tensor.numpy()``: Keras's torch backend calls ``np.array(tensor)``,
which numpy ≥ 2 answers with a ``DeprecationWarning`` (torch's ``__array__``
takes no ``copy`` argument), an error wherever warnings are errors.

``lower_index_top_k`` returns the ``k`` largest values of the last axis, largest first,
equal values in index order (the lower index first). TensorFlow's and JAX's
``top_k`` guarantee that order; ``torch.topk`` does not, so on torch it is a
stable sort.
"""

import keras
import numpy as np
from keras import ops


def to_numpy(x):
    """``x`` (a backend tensor, array or number) as a numpy array."""
    if keras.backend.backend() == "torch":
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(ops.convert_to_numpy(x))


def lower_index_top_k(x, k):
    """``(values, indices)`` of the ``k`` largest entries of the last axis, ties to the lower index."""
    if keras.backend.backend() == "torch":
        indices = ops.argsort(ops.negative(x), axis=-1)[..., :k]  # stable: equal values keep index order
        return ops.take_along_axis(x, indices, axis=-1), indices
    return ops.top_k(x, k, sorted=True)
