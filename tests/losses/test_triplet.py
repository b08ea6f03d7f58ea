import numpy as np
import pytest

from symm_keras.losses.triplet import TripletLoss, triplet_loss
from tests.losses.autodiff import to_numpy
from tests.losses.loss_checks import assert_matches_oracle
from tests.losses.oracles import triplet_oracle


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("average", ["pairs", "triplets", "nonzero"])
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_matches_loop_oracle(rng, margin, average, squared):
    assert_matches_oracle(triplet_loss, triplet_oracle, rng, margin=margin, average=average, squared=squared)


def test_perfect_batch_is_zero():
    labels = np.array([0, 1, 0, 1])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], "float32")
    assert float(to_numpy(triplet_loss(labels, x, margin=0.2))) == 0.0


def test_collapsed_batch_analytic():
    # D = 0 everywhere: every triplet costs m; each anchor has 4 negatives.
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = np.zeros((6, 3), "float32")
    np.testing.assert_allclose(to_numpy(triplet_loss(labels, x, margin=0.5)), 4 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(
        to_numpy(triplet_loss(labels, x, margin=0.5, average="triplets")), 0.5, rtol=1e-6
    )


def test_all_wrong_batch_analytic():
    # Positives at squared distance 4, negatives coincide with the anchor.
    labels = np.array([0, 1, 0, 1])
    x = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [2.0, 0.0]], "float32")
    # Each ordered positive pair (4 of them) has 2 triplets: negative at 0 and
    # 4 from the anchor: [4 − 0 + m] + [4 − 4 + m].
    m = 0.2
    expected = (4 + m) + m
    np.testing.assert_allclose(to_numpy(triplet_loss(labels, x, margin=m)), expected, rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="average"):
        TripletLoss(average="mean")
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(np.array([0, 0]), np.zeros((2, 2), "float32"), margin=float("nan"))
