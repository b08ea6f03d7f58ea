"""Readers of the official layouts, the split index and its CSV round trip."""

import os

import numpy as np
import pytest

from symm_keras import data
from tests.data import fixtures


@pytest.mark.parametrize("dataset", ["cub", "cars196", "sop"])
def test_reader_lists_every_image_with_its_label_and_class_split(tmp_path, dataset):
    fake = fixtures.MAKERS[dataset](str(tmp_path))
    index = data.load_split_index(dataset, str(tmp_path))
    assert len(index) == len(fake.labels)
    assert dict(zip(index.paths.tolist(), index.labels.tolist())) == fake.labels
    lo, hi = data.STANDARD_SPLITS[dataset]["train_classes"]
    expected = np.where((index.labels >= lo) & (index.labels <= hi), "train", "test")
    np.testing.assert_array_equal(index.split, expected)
    assert set(index.train().labels).isdisjoint(index.test().labels)
    assert len(index.train()) + len(index.test()) == len(index)
    assert all(os.path.isfile(p) for p in index.full_paths())


def test_cub_boxes_names_and_per_image_split_file_ignored(tmp_path):
    fixtures.make_cub(str(tmp_path))
    index = data.read_cub(str(tmp_path / "CUB_200_2011"))
    assert index.bboxes.shape == (len(index), 4) and index.bboxes.dtype == np.float32
    assert index.class_names[101] == "101.Bird_Species_101"
    # train_test_split.txt is random per image in the fixture; the DML split is by class only.
    assert set(index.train().labels) == set(fixtures.CUB_TRAIN_CLASSES)
    assert set(index.test().labels) == set(fixtures.CUB_TEST_CLASSES)


def test_cars196_mat_fields_and_box_conversion(tmp_path):
    from scipy import io as scipy_io

    fixtures.make_cars196(str(tmp_path))
    index = data.read_cars196(str(tmp_path))
    raw = scipy_io.loadmat(str(tmp_path / "cars_annos.mat"))["annotations"][0, 0]
    x1, y1, x2, y2 = (int(raw[k][0, 0]) for k in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"))
    np.testing.assert_allclose(index.bboxes[0], [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1])
    assert index.paths[0] == "car_ims/000001.jpg"
    assert index.class_names[99] == "Car Make Model 99 2012"


def test_sop_super_labels_and_split_from_files(tmp_path):
    fixtures.make_sop(str(tmp_path))
    index = data.read_sop(str(tmp_path))
    assert index.super_labels is not None and index.super_labels.min() >= 1
    assert set(index.train().labels) == set(fixtures.SOP_TRAIN_CLASSES)
    assert set(index.test().labels) == set(fixtures.SOP_TEST_CLASSES)


def test_missing_files_fail_with_the_list(tmp_path):
    fake = fixtures.make_cub(str(tmp_path), missing=True)
    with pytest.raises(data.MissingFilesError) as info:
        data.load_split_index("cub", str(tmp_path))
    assert fake.missing[0] in str(info.value) and "1 of" in str(info.value)
    assert info.value.missing == fake.missing
    index = data.load_split_index("cub", str(tmp_path), check_files=False).existing()
    assert len(index) == len(fake.labels) - 1
    # labels of the remaining rows are untouched
    assert dict(zip(index.paths.tolist(), index.labels.tolist())) == {
        p: c for p, c in fake.labels.items() if p not in fake.missing
    }


def test_csv_round_trip_and_prepared_index_preferred(tmp_path):
    fixtures.make_sop(str(tmp_path))
    index = data.read_sop(str(tmp_path))
    target = os.path.join(index.root, data.INDEX_FILENAME)
    index.save_csv(target)
    loaded = data.load_split_index("sop", index.root)
    for name in ("paths", "labels", "split", "super_labels"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))
    assert loaded.root == index.root and loaded.bboxes is None
    with pytest.raises(ValueError, match="not 'cub'"):
        data.load_split_index("cub", index.root)


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        data.load_split_index("imagenet", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="images.txt not found"):
        data.load_split_index("cub", str(tmp_path))
    fixtures.make_sop(str(tmp_path))
    ebay = tmp_path / "Stanford_Online_Products" / "Ebay_test.txt"
    ebay.write_text("id class path\n1 2 a.jpg\n")
    with pytest.raises(ValueError, match="expected header"):
        data.read_sop(str(tmp_path))
    cub = tmp_path / "c"
    fixtures.make_cub(str(cub))
    (cub / "CUB_200_2011" / "image_class_labels.txt").write_text("1\n")
    with pytest.raises(data.MetadataError, match=r"image_class_labels.txt:1: expected 2 fields"):
        data.read_cub(str(cub))
    (tmp_path / "cars").mkdir()
    (tmp_path / "cars" / "cars_annos.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="cannot read"):
        data.read_cars196(str(tmp_path / "cars"))


def test_split_index_validates_columns_and_subsets():
    with pytest.raises(ValueError, match="labels has 1 rows"):
        data.SplitIndex("cub", "/x", np.array(["a", "b"]), np.array([1]), np.array(["train", "test"]))
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.SplitIndex("cub", "/x", np.array(["a"]), np.array([1]), np.array(["val"]))
    index = data.SplitIndex("cub", "/x", np.array(["a", "b", "c"]), np.array([1, 2, 3]), np.array(["train"] * 3))
    resplit = index.resplit_by_class([1, 2])
    assert resplit.test().labels.tolist() == [3]
    assert index.restrict_classes([2, 3]).paths.tolist() == ["b", "c"]
