"""Integration on the real CUB-200-2011 slice in ../shared/data/cub_sample (classes 1-10)."""

import numpy as np
import pytest

from symm_keras import data

pytestmark = pytest.mark.realdata


def test_full_index_reports_the_missing_classes(cub_sample_dir):
    index = data.load_split_index("cub", str(cub_sample_dir), check_files=False)
    assert (len(index), len(index.train()), len(index.test())) == (11788, 5864, 5924)
    assert index.num_classes == 200
    with pytest.raises(data.MissingFilesError, match="11245 of 11788 images"):
        index.check_files()


def test_real_images_through_the_train_and_eval_pipelines(cub_sample_dir):
    index = data.load_split_index("cub", str(cub_sample_dir), check_files=False).restrict_classes(range(1, 11))
    index = index.resplit_by_class(range(1, 6)).check_files()
    assert len(index) == 543 and set(index.train().labels) == {1, 2, 3, 4, 5}
    check = data.check_images(index, thorough=False)
    assert check.num_corrupt == 0
    prep = data.ImagePreprocessing(crop_size=227, resize=256, mode="caffe")
    train = index.train()
    batches = data.pk_batches(train, 5, 2, prep, seed=0, num_steps=2, with_rows=True)
    for images, labels, rows in batches.as_numpy_iterator():
        assert images.shape == (10, 227, 227, 3) and np.isfinite(images).all()
        np.testing.assert_array_equal(labels, train.labels[rows])
        assert -130 < images.min() and images.max() < 155  # BGR, 0-255 minus the Caffe mean
    test = index.test()
    seen = 0
    small = data.ImagePreprocessing(crop_size=56, resize=64, mode="caffe")  # every test image, cheaply
    for images, labels in data.eval_dataset(test, small, batch_size=128).as_numpy_iterator():
        assert images.shape[1:] == (56, 56, 3)
        seen += len(labels)
    assert seen == len(test) == 261


def test_greyscale_cub_images_decode_to_rgb(cub_sample_dir):
    from PIL import Image

    index = data.load_split_index("cub", str(cub_sample_dir), check_files=False).restrict_classes(range(1, 11))
    grey = [i for i, p in enumerate(index.full_paths()) if Image.open(p).mode == "L"]
    if not grey:
        pytest.skip("no greyscale image among classes 1-10 of the sample")
    ds = data.eval_dataset(index.subset(grey), data.ImagePreprocessing(mode="none"), batch_size=4)
    images, _ = next(ds.as_numpy_iterator())
    np.testing.assert_allclose(images[..., 0], images[..., 1])
