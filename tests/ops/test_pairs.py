import numpy as np
import pytest

from symm_keras.ops.pairs import check_pk_layout, occurrence_rank, pair_indices, pairs_to_rows, split_anchor_positive
from tests.losses.autodiff import to_numpy


def test_occurrence_rank():
    labels = np.array([3, 1, 3, 1, 2, 2, 3])
    np.testing.assert_array_equal(to_numpy(occurrence_rank(labels)), [0, 0, 1, 1, 0, 1, 2])


def test_split_follows_labels_not_positions():
    labels = np.array([7, 4, 4, 9, 7, 9])
    x = np.arange(6, dtype="float32")[:, None] * np.ones((1, 2), "float32")
    anchors, positives, pair_labels, valid = (to_numpy(t) for t in split_anchor_positive(labels, x))
    np.testing.assert_array_equal(pair_labels, [7, 4, 9])
    np.testing.assert_array_equal(anchors[:, 0], [0, 1, 3])
    np.testing.assert_array_equal(positives[:, 0], [4, 2, 5])
    assert valid.all()


@pytest.mark.parametrize("order", [[0, 0, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2], [2, 0, 0, 1, 2, 1]])
def test_every_pair_is_one_class(order):
    labels = np.array(order)
    x = labels[:, None].astype("float32") + np.zeros((1, 3), "float32")
    anchors, positives, pair_labels, _ = (to_numpy(t) for t in split_anchor_positive(labels, x))
    np.testing.assert_array_equal(anchors[:, 0], pair_labels)
    np.testing.assert_array_equal(positives[:, 0], pair_labels)
    assert sorted(pair_labels.tolist()) == [0, 1, 2]


def test_any_layout_pairs_the_first_two_images_of_each_class():
    # class 5: rows 0, 6; class 1: rows 1, 2 (row 3 unused); 8 and 9 single.
    labels = np.array([5, 1, 1, 1, 8, 9, 5])
    pairs = [to_numpy(t) for t in pair_indices(labels)]
    anchor, positive, pair_labels, valid = pairs
    assert len(valid) == 3  # B // 2 slots
    np.testing.assert_array_equal(valid, [True, True, False])
    np.testing.assert_array_equal(anchor[:2], [0, 1])
    np.testing.assert_array_equal(positive[:2], [6, 2])
    np.testing.assert_array_equal(pair_labels[:2], [5, 1])


def test_pairs_to_rows_splits_each_valid_pair_between_its_rows():
    labels = np.array([5, 1, 1, 1, 8, 9, 5])
    rows = to_numpy(pairs_to_rows(np.array([2.0, 4.0, 100.0], "float32"), pair_indices(labels), 7))
    np.testing.assert_allclose(rows, [1.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0])


def test_check_pk_layout_names_the_bad_classes():
    with pytest.raises(ValueError, match="exactly 2"):
        check_pk_layout(np.array([0, 0, 0, 1]))
    check_pk_layout(np.array([0, 0, 0, 1, 1, 1]), images_per_class=3)
