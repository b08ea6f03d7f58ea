"""Multi-similarity loss (Wang et al., CVPR 2019, Sec. 4) against a loop oracle."""

import numpy as np
import pytest

from symm_keras.losses.multi_similarity import MultiSimilarityLoss, multi_similarity_loss
from tests.losses.autodiff import computed_tolerance, float64_enabled, to_numpy, value_and_gradient


def ms_oracle(labels, x, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True):
    """One anchor at a time, as Sec. 4.1-4.2 read: mine, then weight; mean over the batch."""
    labels = np.asarray(labels).reshape(-1)
    x = np.asarray(x, np.float64)
    total = 0.0
    for i in range(len(labels)):
        pos = [k for k in range(len(labels)) if k != i and labels[k] == labels[i]]
        neg = [k for k in range(len(labels)) if labels[k] != labels[i]]
        s = {k: float(x[i] @ x[k]) for k in pos + neg}
        if mining:
            min_pos = min((s[k] for k in pos), default=np.inf)
            max_neg = max((s[k] for k in neg), default=-np.inf)
            neg_kept = [k for k in neg if s[k] > min_pos - epsilon]
            pos_kept = [k for k in pos if s[k] < max_neg + epsilon]
        else:
            pos_kept, neg_kept = pos, neg
        a, b = positive_scale, negative_scale
        total += np.log1p(sum(np.exp(-a * (s[k] - base)) for k in pos_kept)) / a
        total += np.log1p(sum(np.exp(b * (s[k] - base)) for k in neg_kept)) / b
    return total / len(labels)


def _batch(rng, classes=5, per_class=3, dim=6):
    labels = rng.permutation(np.repeat(np.arange(classes) * 7, per_class))
    centres = rng.normal(size=(classes, dim))
    x = centres[np.searchsorted(np.unique(labels), labels)] + 0.7 * rng.normal(size=(len(labels), dim))
    return labels, x / np.linalg.norm(x, axis=1, keepdims=True)


CASES = [{}, {"mining": False}, {"positive_scale": 3.0, "negative_scale": 20.0, "base": 0.5, "epsilon": 0.2}]


@pytest.mark.parametrize("kwargs", CASES, ids=["paper", "no_mining", "options"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_loop_oracle(kwargs, dtype, rng):
    labels, x = _batch(rng)
    expected = ms_oracle(labels, x, **kwargs)
    with float64_enabled():
        got = float(to_numpy(multi_similarity_loss(labels, x.astype(dtype), **kwargs)))
        rtol = computed_tolerance(dtype, float32=1e-5, float64=1e-10)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
        # The class gives the same value; its per-sample values average to it.
        loss = MultiSimilarityLoss(dtype=dtype, **kwargs)
        np.testing.assert_allclose(float(to_numpy(loss(labels, x.astype(dtype)))), expected, rtol=rtol)


def test_mining_drops_easy_pairs_and_gradients_are_finite(rng):
    labels, x = _batch(rng)
    mined = ms_oracle(labels, x)
    assert mined != ms_oracle(labels, x, mining=False)
    value, grad = value_and_gradient(lambda e: MultiSimilarityLoss()(labels, e), x.astype("float32"))
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad != 0.0)


def test_bad_options():
    with pytest.raises(ValueError, match="positive_scale"):
        MultiSimilarityLoss(positive_scale=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        MultiSimilarityLoss(epsilon=-1.0)
    with pytest.raises(ValueError, match="positive_scale|angle"):
        MultiSimilarityLoss(alpha=2.0)
