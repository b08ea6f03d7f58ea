import numpy as np
import pytest

from symm_keras.losses.contrastive import ContrastiveLoss, contrastive_loss
from tests.losses.autodiff import to_numpy
from tests.losses.loss_checks import assert_matches_oracle
from tests.losses.oracles import contrastive_oracle


@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_matches_loop_oracle(rng, margin):
    assert_matches_oracle(contrastive_loss, contrastive_oracle, rng, margin=margin)


def test_perfect_batch_is_zero():
    labels = np.array([0, 0, 1, 1])
    x = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [3.0, 0.0]], "float32")
    assert float(to_numpy(contrastive_loss(labels, x, margin=1.0))) == 0.0


def test_collapsed_batch_analytic():
    # All points equal: 2 positive pairs cost 0, 4 negative pairs cost ½m² each.
    labels = np.array([0, 0, 1, 1])
    x = np.ones((4, 3), "float32")
    expected = 4 * 0.5 * 0.5**2 / 6
    np.testing.assert_allclose(to_numpy(contrastive_loss(labels, x, margin=0.5)), expected, rtol=1e-6)


def test_negatives_count_without_positives():
    labels = np.array([0, 1])
    x = np.array([[0.0, 0.0], [0.5, 0.0]], "float32")
    np.testing.assert_allclose(to_numpy(contrastive_loss(labels, x)), 0.5 * 0.5**2, rtol=1e-6)


def test_bad_margin():
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(margin=-1.0)
