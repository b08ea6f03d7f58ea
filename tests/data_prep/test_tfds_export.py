"""The TFDS route with tfds.testing.mock_data: export, re-split by class, 1-based labels."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from data_prep.tfds_export import export_tfds
from symm_keras import data
from tests.data import fixtures

# TFDS per-image splits: both hold classes of both DML halves (0-based TFDS labels).
TFDS_LABELS = {
    "cub": {"train": [0, 1, 150, 0, 199], "test": [1, 150, 100, 99]},
    "cars196": {"train": [0, 97, 98, 195], "test": [97, 98, 5]},
    "sop": {"train": [0, 0, 1, 2], "test": [11318, 11318, 11319]},
}


def _jpeg(label):
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), fixtures.class_colour(label), np.uint8)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _mock_as_dataset(dataset):
    label_key = "class_id" if dataset == "sop" else "label"

    def as_dataset(builder, split, decoders=None, shuffle_files=False, **kwargs):
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding), "the export must keep the encoded bytes"
        labels = TFDS_LABELS[dataset][split]
        examples = {
            "image": [_jpeg(label + 1) for label in labels],
            label_key: np.array(labels, np.int64),
        }
        if dataset == "sop":
            examples["super_class_id"] = np.array([label % 12 for label in labels], np.int64)
        return tf.data.Dataset.from_tensor_slices(examples)

    return as_dataset


@pytest.mark.parametrize("dataset", ["cub", "cars196", "sop"])
def test_tfds_export_resplits_by_class_with_official_ids(tmp_path, dataset):
    with tfds.testing.mock_data(as_dataset_fn=_mock_as_dataset(dataset)):
        index = export_tfds(dataset, str(tmp_path), progress=False)
    labels = TFDS_LABELS[dataset]
    assert len(index) == len(labels["train"]) + len(labels["test"])
    assert sorted(index.labels.tolist()) == sorted(x + 1 for x in labels["train"] + labels["test"])
    if dataset == "sop":  # SOP's TFDS splits are Ebay_train / Ebay_test: kept
        assert sorted(index.train().labels.tolist()) == sorted(x + 1 for x in labels["train"])
        assert index.super_labels is not None
    else:
        lo, hi = data.STANDARD_SPLITS[dataset]["train_classes"]
        assert ((index.train().labels >= lo) & (index.train().labels <= hi)).all()
        assert (index.test().labels > hi).all()
    loaded = data.load_split_index(dataset, str(tmp_path))
    np.testing.assert_array_equal(loaded.labels, index.labels)
    prep = data.ImagePreprocessing(crop_size=8, resize=8, mode="none")
    images, batch_labels = next(data.eval_dataset(loaded, prep, batch_size=64).as_numpy_iterator())
    for image, label in zip(images, batch_labels):
        np.testing.assert_allclose(image.mean((0, 1)), fixtures.class_colour(label), atol=3)


def test_tfds_export_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        export_tfds("imagenet", str(tmp_path))


def test_tfds_export_with_lying_labels_writes_no_index(tmp_path):
    lying = {
        "cub": {"train": [0, 1, 250], "test": [150, 100]},  # 250: no such class among 200
        "sop": {"train": [0, 1], "test": [1, 11318]},  # class 2 (id 1) in both TFDS splits
    }
    for dataset, labels in lying.items():
        saved = TFDS_LABELS[dataset]
        TFDS_LABELS[dataset] = labels
        try:
            with tfds.testing.mock_data(as_dataset_fn=_mock_as_dataset(dataset)):
                with pytest.raises(data.MetadataError) as info:
                    export_tfds(dataset, str(tmp_path / dataset), progress=False)
        finally:
            TFDS_LABELS[dataset] = saved
        assert not (tmp_path / dataset / data.INDEX_FILENAME).exists()
        if dataset == "cub":
            assert info.value.problems == [
                "TFDS caltech_birds2011 train example 2: label 250 is outside the 200 classes 0-199."
            ]
        else:
            assert info.value.problems == [
                "TFDS stanford_online_products test example 0: class 2 is in the test split here but in the train "
                "split at TFDS stanford_online_products train example 1 (the splits are by class)."
            ]
