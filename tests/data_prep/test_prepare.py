"""prepare.py on fixture datasets: checks, split index, summary, TFRecord shards, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_prep.prepare import prepare
from symm_keras import data
from tests.data import fixtures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("dataset", ["cub", "cars196", "sop"])
def test_prepare_skips_corrupt_images_and_writes_a_loadable_index(tmp_path, dataset):
    fake = fixtures.MAKERS[dataset](str(tmp_path), corrupt=True, grey=True, png=True)
    with pytest.warns(UserWarning, match="skipping 1 of"):
        summary = prepare(dataset, str(tmp_path), progress=False)
    assert summary["corrupt_skipped"] == fake.corrupt
    assert (tmp_path / "corrupt_images.txt").read_text().split() == fake.corrupt
    index = data.load_split_index(dataset, str(tmp_path))
    assert len(index) == len(fake.labels) - 1 == summary["images"]
    assert summary["train_images"] + summary["test_images"] == summary["images"]
    # labels come from the metadata, row by row: nothing shifted by the skipped file
    by_name = {os.path.basename(p): c for p, c in fake.labels.items()}
    assert all(by_name[os.path.basename(p)] == c for p, c in zip(index.paths, index.labels))
    assert json.loads((tmp_path / "prepare_summary.json").read_text())["dataset"] == dataset


def test_prepare_fails_on_missing_files_and_on_corrupt_by_flag(tmp_path):
    fake = fixtures.make_cub(str(tmp_path / "a"), missing=True)
    with pytest.raises(data.MissingFilesError, match=os.path.basename(fake.missing[0])):
        prepare("cub", str(tmp_path / "a"), progress=False)
    fake = fixtures.make_cub(str(tmp_path / "b"), corrupt=True)
    with pytest.raises(data.CorruptImagesError, match=os.path.basename(fake.corrupt[0])):
        prepare("cub", str(tmp_path / "b"), on_corrupt="fail", progress=False)
    with pytest.raises(ValueError, match="check must be one of"):
        prepare("cub", str(tmp_path / "b"), check="md5", progress=False)


def test_tfrecord_shards_feed_the_pipelines_like_the_files(tmp_path):
    fixtures.make_cars196(str(tmp_path))
    summary = prepare("cars196", str(tmp_path), tfrecord_shards=2, progress=False)
    assert len(summary["tfrecords"]) == 4  # 2 train + 2 test shards
    index = data.load_split_index("cars196", str(tmp_path))
    train = index.train()
    encoded = data.load_encoded_images(os.path.join(str(tmp_path), "tfrecords", "train-*"), train)
    prep = data.ImagePreprocessing(crop_size=24, resize=32, mode="none")
    from_files = data.pk_batches(train, 2, 2, prep, seed=3, num_steps=2)
    from_memory = data.pk_batches(train, 2, 2, prep, seed=3, num_steps=2, encoded_images=encoded)
    for (a, la), (b, lb) in zip(from_files.as_numpy_iterator(), from_memory.as_numpy_iterator()):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="rows of the index are not in"):
        data.load_encoded_images(os.path.join(str(tmp_path), "tfrecords", "test-*"), train)


def test_resized_and_box_cropped_shards(tmp_path):
    fixtures.make_cub(str(tmp_path))
    prepare("cub", str(tmp_path), tfrecord_shards=1, tfrecord_resize=16, bbox_crop=True, progress=False)
    index = data.load_split_index("cub", str(tmp_path)).test()
    encoded = data.load_encoded_images(os.path.join(str(tmp_path), "tfrecords", "test-*"), index)
    image = data.ImagePreprocessing.decode(encoded[0]).numpy()
    assert image.shape == (16, 16, 3)
    with pytest.raises(ValueError, match="bbox_crop needs resize"):
        data.write_tfrecord_shards(index, str(tmp_path / "x"), 1, bbox_crop=True)


@pytest.mark.slow  # two fresh interpreters importing TensorFlow: ~10-50 s on a shared 2-core machine
def test_cli_prepare(tmp_path):
    fixtures.make_sop(str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.prepare", "--dataset=sop", f"--root={tmp_path}", "--check=quick",
         "--noprogress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"dataset": "sop"' in result.stdout
    assert "metadata checked" in result.stdout and "note: classes: 10, published 22634" in result.stdout
    assert (tmp_path / "split_index.csv").is_file()
    missing = subprocess.run(
        [sys.executable, "-m", "data_prep.prepare", "--dataset=cub", f"--root={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert missing.returncode == 1 and "images.txt not found" in missing.stderr
    # the lie: image id 5 listed again on a line naming a test image used to exit 0
    fake = fixtures.make_cub(str(tmp_path / "lie"))
    test_image = [p for p, c in fake.labels.items() if c == 101][0]
    fixtures.edit_lines(os.path.join(fake.root, "images.txt"), lambda lines: lines + [f"5 {test_image}"])
    lie = subprocess.run(
        [sys.executable, "-m", "data_prep.prepare", "--dataset=cub", f"--root={tmp_path / 'lie'}", "--noprogress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert lie.returncode == 1 and "images.txt:37: image id 5 is listed again (first at line 5)" in lie.stderr
    assert f"(all 1 listed in {tmp_path / 'lie'}/metadata_problems.txt)" in lie.stderr
