import numpy as np
import pytest

from symm_keras.ops.pairs import check_pk_layout, occurrence_rank, split_anchor_positive
from tests.losses.autodiff import to_numpy


def test_occurrence_rank():
    labels = np.array([3, 1, 3, 1, 2, 2, 3])
    np.testing.assert_array_equal(to_numpy(occurrence_rank(labels)), [0, 0, 1, 1, 0, 1, 2])


def test_split_follows_labels_not_positions():
    labels = np.array([7, 4, 4, 9, 7, 9])
    x = np.arange(6, dtype="float32")[:, None] * np.ones((1, 2), "float32")
    anchors, positives, pair_labels = (to_numpy(t) for t in split_anchor_positive(labels, x))
    np.testing.assert_array_equal(pair_labels, [7, 4, 9])
    np.testing.assert_array_equal(anchors[:, 0], [0, 1, 3])
    np.testing.assert_array_equal(positives[:, 0], [4, 2, 5])


@pytest.mark.parametrize("order", [[0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2], [2, 0, 0, 1, 2, 1]])
def test_every_pair_is_one_class(order):
    labels = np.array(order)
    x = labels[:, None].astype("float32") + np.zeros((1, 3), "float32")
    anchors, positives, pair_labels = (to_numpy(t) for t in split_anchor_positive(labels, x))
    np.testing.assert_array_equal(anchors[:, 0], pair_labels)
    np.testing.assert_array_equal(positives[:, 0], pair_labels)
    assert sorted(pair_labels.tolist()) == [0, 1, 2]


def test_bad_layouts_are_clear_errors():
    with pytest.raises(ValueError, match="exactly 2"):
        check_pk_layout(np.array([0, 0, 0, 1]))
    with pytest.raises(ValueError, match="even"):
        split_anchor_positive(np.array([0, 0, 1]), np.zeros((3, 2), "float32"))
    check_pk_layout(np.array([0, 0, 0, 1, 1, 1]), images_per_class=3)
