import math

import numpy as np
import pytest

from symm_keras.losses.lifted_structure import LiftedStructureLoss, lifted_structure_loss
from tests.losses.autodiff import to_numpy
from tests.losses.loss_checks import assert_matches_oracle
from tests.losses.oracles import lifted_structure_oracle


@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_matches_loop_oracle(rng, margin):
    assert_matches_oracle(lifted_structure_loss, lifted_structure_oracle, rng, margin=margin)


def test_collapsed_batch_analytic():
    # D = 0: J = log(2·n_neg·e^m) for each of the 3 positive pairs.
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = np.zeros((6, 4), "float32")
    m = 1.0
    j = m + math.log(2 * 4)
    np.testing.assert_allclose(to_numpy(lifted_structure_loss(labels, x, margin=m)), j**2 / 2, rtol=1e-6)


def test_far_negatives_give_zero():
    labels = np.array([0, 0, 1, 1])
    x = np.array([[0.0], [0.0], [100.0], [100.0]], "float32")
    assert float(to_numpy(lifted_structure_loss(labels, x))) == 0.0


def test_large_distances_stay_finite():
    labels = np.array([0, 0, 1, 1])
    x = np.array([[0.0], [1e4], [-1e4], [2e4]], "float32")
    value = float(to_numpy(lifted_structure_loss(labels, x)))
    assert np.isfinite(value) and value > 0


def test_bad_margin():
    with pytest.raises(ValueError, match="margin"):
        LiftedStructureLoss(margin="big")
