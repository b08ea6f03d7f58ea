"""symm_keras.ops.host: one top-k order on every backend, host copies without warnings."""

import warnings

import numpy as np
import pytest
from keras import ops

from symm_keras.ops.host import lower_index_top_k, to_numpy


@pytest.mark.parametrize("k", [1, 3, 7])
def test_top_k_breaks_ties_to_the_lower_index(k):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(40, 7)).astype("float32")  # many exact ties
    scores[0] = -np.inf  # a row of -inf keeps index order too
    values, indices = lower_index_top_k(ops.convert_to_tensor(scores), k)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(to_numpy(indices), expected)
    np.testing.assert_array_equal(to_numpy(values), np.take_along_axis(scores, expected, axis=1))


@pytest.mark.parametrize("dtype", ["float32", "int32", "bool"])
def test_to_numpy_raises_no_warning(dtype):
    tensor = ops.convert_to_tensor(np.arange(6).reshape(2, 3).astype(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        array = to_numpy(tensor)
    assert isinstance(array, np.ndarray) and array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(array, np.arange(6).reshape(2, 3).astype(dtype))
