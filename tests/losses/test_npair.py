import math

import numpy as np
import pytest

from symm_keras.losses.npair import NPairLoss, npair_loss
from tests.losses.autodiff import to_numpy
from tests.losses.loss_checks import assert_matches_oracle
from tests.losses.oracles import npair_oracle


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("l2_reg", [0.002, 0.0])
def test_matches_loop_oracle(rng, l2_reg, symmetric):
    assert_matches_oracle(
        npair_loss, npair_oracle, rng, balanced_only=True, l2_reg=l2_reg, symmetric=symmetric
    )


def test_zero_embeddings_give_log_p():
    labels = np.array([0, 1, 2, 0, 1, 2])
    value = npair_loss(labels, np.zeros((6, 3), "float32"), l2_reg=0.0)
    np.testing.assert_allclose(to_numpy(value), math.log(3), rtol=1e-6)


def test_perfect_batch_is_near_zero():
    labels = np.array([0, 1, 2, 0, 1, 2])
    x = 20.0 * np.concatenate([np.eye(3), np.eye(3)]).astype("float32")
    assert float(to_numpy(npair_loss(labels, x, l2_reg=0.0))) < 1e-6


def test_l2_term():
    rng = np.random.default_rng(3)
    labels = np.array([5, 5, 9, 9])
    x = rng.normal(size=(4, 3)).astype("float32")
    with_l2 = float(to_numpy(npair_loss(labels, x, l2_reg=0.5)))
    without = float(to_numpy(npair_loss(labels, x, l2_reg=0.0)))
    norms = np.sum(x.astype(np.float64) ** 2, axis=1)
    expected = 0.25 * 0.5 * (norms[[0, 2]].mean() + norms[[1, 3]].mean())
    np.testing.assert_allclose(with_l2 - without, expected, rtol=1e-5)


def test_pairs_follow_labels_not_positions():
    rng = np.random.default_rng(4)
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = rng.normal(size=(6, 4)).astype("float32")
    order = np.array([0, 2, 4, 1, 3, 5])  # classes interleaved: 0 1 2 0 1 2
    a = float(to_numpy(npair_loss(labels, x)))
    b = float(to_numpy(npair_loss(labels[order], x[order])))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_symmetric_averages_both_directions():
    rng = np.random.default_rng(5)
    labels = np.array([0, 1, 2, 0, 1, 2])
    x = rng.normal(size=(6, 4)).astype("float32")
    swapped = np.concatenate([x[3:], x[:3]])  # positives become anchors
    forward = float(to_numpy(npair_loss(labels, x, l2_reg=0.0)))
    backward = float(to_numpy(npair_loss(labels, swapped, l2_reg=0.0)))
    both = float(to_numpy(npair_loss(labels, x, l2_reg=0.0, symmetric=True)))
    np.testing.assert_allclose(both, 0.5 * (forward + backward), rtol=1e-6)


def test_other_layouts_use_the_first_two_images_of_each_class(rng):
    labels = np.array([0, 0, 0, 1, 2, 1, 1, 3])
    x = rng.normal(size=(8, 3)).astype("float32")
    keep = [0, 1, 3, 5]  # classes 0 and 1: first two images; 2 and 3 are single
    np.testing.assert_allclose(
        float(npair_loss(labels, x)), float(npair_loss(labels[keep], x[keep])), rtol=1e-6
    )


def test_bad_l2_reg():
    with pytest.raises(ValueError, match="l2_reg"):
        NPairLoss(l2_reg=-0.1)
