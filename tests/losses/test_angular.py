import math

import numpy as np
import pytest

from symm_keras.losses.angular import AngularLoss, angular_loss
from symm_keras.losses.npair import npair_loss
from tests.losses.autodiff import to_numpy
from tests.losses.loss_checks import assert_matches_oracle
from tests.losses.oracles import angular_oracle


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"angle": 36.0, "l2_reg": 0.0},
        {"angle": 50.0, "with_npair": True},
        {"with_npair": True, "angular_weight": 0.5, "l2_reg": 0.01},
    ],
)
def test_matches_loop_oracle(rng, params):
    assert_matches_oracle(angular_loss, angular_oracle, rng, balanced_only=True, **params)


def test_zero_embeddings_give_log_p():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    value = angular_loss(labels, np.zeros((8, 3), "float32"))
    np.testing.assert_allclose(to_numpy(value), math.log(4), rtol=1e-6)


def test_logits_at_45_degrees():
    # tan²45° = 1: f^p = 4 a·p, f^n = 4 (a + p)·p_j. Two classes in 1-D.
    labels = np.array([0, 0, 1, 1])
    x = np.array([[1.0], [2.0], [0.5], [-1.0]], "float32")
    a, p = x[[0, 2], 0], x[[1, 3], 0]
    expected = 0.0
    for i, j in [(0, 1), (1, 0)]:
        expected += math.log1p(math.exp(4 * (a[i] + p[i]) * p[j] - 4 * a[i] * p[i]))
    expected /= 2
    value = angular_loss(labels, x, angle=45.0, l2_reg=0.0)
    np.testing.assert_allclose(to_numpy(value), expected, rtol=1e-5)


def test_with_npair_is_npair_plus_weighted_angular():
    rng = np.random.default_rng(6)
    labels = np.array([0, 1, 2, 0, 1, 2])
    x = rng.normal(size=(6, 5)).astype("float32")
    combined = float(to_numpy(angular_loss(labels, x, with_npair=True, angular_weight=2.0)))
    npair = float(to_numpy(npair_loss(labels, x, l2_reg=0.0)))
    angular = float(to_numpy(angular_loss(labels, x, l2_reg=0.0)))
    l2 = float(to_numpy(npair_loss(labels, x))) - npair
    np.testing.assert_allclose(combined, npair + 2.0 * angular + l2, rtol=1e-5)


@pytest.mark.parametrize("angle", [0.0, 90.0, -10.0, "wide"])
def test_bad_angle(angle):
    with pytest.raises(ValueError, match="angle"):
        AngularLoss(angle=angle)


def test_a_batch_without_pairs_is_zero():
    # Every class once: no positive pair, nothing to learn from (the L2 term too).
    assert float(angular_loss(np.array([0, 1, 2, 3]), np.ones((4, 2), "float32"))) == 0.0
