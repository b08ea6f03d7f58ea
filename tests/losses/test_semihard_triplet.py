import numpy as np
import pytest

from symm_keras.losses.semihard_triplet import SemiHardTripletLoss, semihard_triplet_loss
from tests.losses.autodiff import to_numpy, value_and_gradient
from tests.losses.loss_checks import assert_matches_oracle
from tests.losses.oracles import semihard_oracle


@pytest.mark.parametrize(
    "distance_metric, margin", [("L2", 1.0), ("L2", 0.1), ("squared-L2", 0.5), ("angular", 0.2)]
)
def test_matches_loop_oracle(rng, distance_metric, margin):
    assert_matches_oracle(
        semihard_triplet_loss, semihard_oracle, rng, margin=margin, distance_metric=distance_metric
    )


def test_tf_addons_golden_value():
    # TF Addons `triplet_semihard_loss` docstring example.
    value = SemiHardTripletLoss(margin=1.0)(np.array([0, 0]), np.array([[0.0, 1.0], [1.0, 0.0]]))
    np.testing.assert_allclose(to_numpy(value), 2.4142137, rtol=1e-7)


def test_semi_hard_negative_is_the_nearest_farther_one():
    # Anchor 0 at origin, positive at distance 1, negatives at 0.5, 1.5 and 3:
    # the semi-hard negative is the one at 1.5 → [m + 1 − 1.5]_+.
    labels = np.array([0, 0, 1, 2, 3])
    x = np.array([[0.0], [1.0], [-0.5], [-1.5], [3.0]], "float32")
    m = 1.0
    # The positive's own view: anchor 1 (x=1), positive 0 at distance 1;
    # negatives at 1.5, 2.5, 2 → nearest farther is 1.5.
    expected = ((m + 1 - 1.5) + (m + 1 - 1.5)) / 2
    np.testing.assert_allclose(to_numpy(semihard_triplet_loss(labels, x, margin=m)), expected, rtol=1e-6)


def test_no_semi_hard_negative_uses_the_hardest_of_the_easy_ones():
    # All negatives are closer than the positive: TF Addons falls back to the
    # farthest negative (masked maximum).
    labels = np.array([0, 0, 1])
    x = np.array([[0.0], [2.0], [1.0]], "float32")
    # d_ap = 2 for both directions, negative at distance 1 from each.
    np.testing.assert_allclose(to_numpy(semihard_triplet_loss(labels, x, margin=0.5)), 0.5 + 2 - 1, rtol=1e-6)


def test_zero_without_positives_instead_of_nan():
    labels = np.array([0, 1, 2])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    value, grad = value_and_gradient(lambda e: semihard_triplet_loss(labels, e), x)
    assert value == 0.0
    assert np.all(grad == 0.0)


def test_bad_distance_metric():
    with pytest.raises(ValueError, match="distance_metric"):
        SemiHardTripletLoss(distance_metric="cosine")
