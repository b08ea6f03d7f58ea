"""Comparison of a vectorised loss with its numpy float64 loop oracle."""

import numpy as np
from keras import ops

from tests.losses.autodiff import computed_dtype, computed_tolerance, float64_enabled, to_numpy
from tests.losses.oracles import random_batches


def assert_matches_oracle(loss_fn, oracle, rng, balanced_only=False, **params):
    """``loss_fn`` equals ``oracle`` in float32 (1e-4) and float64 (1e-7).

    float64 is not exact: distances come from the expansion ‖x‖² + ‖y‖² − 2x·y.
    """
    for labels, x in random_batches(rng, balanced_only=balanced_only):
        expected = oracle(labels, x, **params)
        got32 = float(to_numpy(loss_fn(labels, x.astype("float32"), **params)))
        np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-5)
        with float64_enabled():
            x64 = ops.convert_to_tensor(x, dtype="float64")
            value = loss_fn(labels, x64, **params)
            assert str(ops.convert_to_numpy(value).dtype) in ("float64", computed_dtype("float64"))
            got64 = float(to_numpy(value))
            rtol, atol = computed_tolerance("float64", float32=(1e-4, 1e-5), float64=(1e-7, 1e-10))
        np.testing.assert_allclose(got64, expected, rtol=rtol, atol=atol)
