"""tf.data pipelines on fixture datasets: layouts, no label mix-ups, resume, robustness."""


import numpy as np
import pytest

from symm_keras import data
from tests.data import fixtures

RAW = data.ImagePreprocessing(crop_size=24, resize=32, mode="none")


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    base = tmp_path_factory.mktemp("cub")
    fake = fixtures.make_cub(str(base), images_per_class=5, corrupt=True, grey=True, png=True)
    return fake, data.load_split_index("cub", str(base))


def _colour_label(image):
    """Class whose fixture colour is nearest to the image's mean colour."""
    classes = fixtures.CUB_TRAIN_CLASSES + fixtures.CUB_TEST_CLASSES
    colours = np.array([fixtures.class_colour(c) for c in classes], float)
    mean = image.reshape(-1, 3).mean(0)
    return classes[int(np.argmin(np.abs(colours - mean).sum(1)))]


def _grey_ok(label, image, index, row, fake):
    return index.paths[row] in fake.grey and np.ptp(image.reshape(-1, 3).mean(0)) < 1.0


def test_pk_batches_images_match_labels_and_rows(cub):
    fake, index = cub
    train = index.train()
    with pytest.warns(UserWarning, match="skipping 1 of"):
        ds = data.pk_batches(train, 3, 2, RAW, seed=0, num_steps=4, validate="decode", with_rows=True)
    for images, labels, rows in ds.as_numpy_iterator():
        assert images.shape == (6, 24, 24, 3) and images.dtype == np.float32
        np.testing.assert_array_equal(labels, train.labels[rows])
        assert (labels.reshape(3, 2) == labels.reshape(3, 2)[:, :1]).all()
        for image, label, row in zip(images, labels, rows):
            assert _colour_label(image) == label or _grey_ok(label, image, train, row, fake)
            assert train.paths[row] not in fake.corrupt


def test_resume_from_step_reproduces_the_same_batches(cub):
    _, index = cub
    train = index.train()
    sampler = data.ClassBalancedSampler(train.labels, 2, 2, seed=4, eligible=data.check_images(train).ok)
    full = list(data.sampler_batches(train, sampler, RAW, seed=4, num_steps=5).as_numpy_iterator())
    resumed = list(data.sampler_batches(train, sampler, RAW, seed=4, start_step=3, num_steps=2).as_numpy_iterator())
    for (a_img, a_lab), (b_img, b_lab) in zip(full[3:], resumed):
        np.testing.assert_array_equal(a_lab, b_lab)
        np.testing.assert_array_equal(a_img, b_img)
    other = next(data.sampler_batches(train, sampler, RAW, seed=5, num_steps=1).as_numpy_iterator())
    assert not np.array_equal(other[0], full[0][0]), "augmentation must depend on the seed"


def test_corrupt_images_fail_by_flag_and_missing_files_fail_first(cub, tmp_path):
    fake, index = cub
    with pytest.raises(data.CorruptImagesError, match=fake.corrupt[0].split("/")[-1]):
        data.pk_batches(index.train(), 2, 2, RAW, validate="decode", on_corrupt="fail")
    broken = fixtures.make_cub(str(tmp_path), missing=True)
    with pytest.raises(data.MissingFilesError, match=broken.missing[0].split("/")[-1]):
        data.pk_batches(data.load_split_index("cub", str(tmp_path), check_files=False), 2, 2, RAW)
    with pytest.raises(ValueError, match="validate must be one of"):
        data.pk_batches(index.train(), 2, 2, RAW, validate="all")


def test_check_images_counts_and_keeps_row_numbers(cub):
    fake, index = cub
    with pytest.warns(UserWarning, match="skipping 1 of"):
        check = data.check_images(index)
    assert check.num_corrupt == 1 and check.corrupt_paths == tuple(fake.corrupt)
    bad = np.flatnonzero(~check.ok)
    assert index.paths[bad].tolist() == fake.corrupt
    assert len(check.eligible_rows) == len(index) - 1


def test_asymmetric_batches_layout(cub):
    _, index = cub
    train = index.train()
    ds = data.asymmetric_batches(train, 3, 2, shuffled_size=4, preprocessing=RAW, num_steps=3, with_rows=True)
    for images, labels, rows in ds.as_numpy_iterator():
        assert images.shape == (10, 24, 24, 3)
        neat = labels[:6].reshape(3, 2)
        assert (neat == neat[:, :1]).all() and len(set(neat[:, 0])) == 3
        np.testing.assert_array_equal(labels, train.labels[rows])


def test_triplet_feed_yields_anchor_positive_negative_blocks(cub):
    fake, index = cub
    train = index.train()
    corrupt_row = int(np.flatnonzero(train.paths == fake.corrupt[0])[0])
    labels = train.labels
    triplets = []
    for a in range(len(train)):
        same = np.flatnonzero((labels == labels[a]) & (np.arange(len(train)) != a))
        diff = np.flatnonzero(labels != labels[a])
        triplets.append((a, same[0], diff[a % len(diff)]))
    triplets = np.array(triplets)
    feed = data.TripletFeed(train, triplets_per_batch=4, steps_per_epoch=2, preprocessing=RAW,
                            validate="decode")
    feed.set_triplets(triplets, epoch=0)
    for images, batch_labels, rows in feed.dataset(num_steps=2, with_rows=True).as_numpy_iterator():
        assert images.shape == (12, 24, 24, 3)
        a, p, n = rows.reshape(3, 4)
        assert corrupt_row not in rows
        assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
        np.testing.assert_array_equal(batch_labels, labels[rows])


def test_eval_dataset_keeps_row_order_and_decodes_grey_and_png(cub):
    fake, index = cub
    clean = index.subset(np.isin(index.paths, fake.corrupt, invert=True))
    batches = list(data.eval_dataset(clean, RAW, batch_size=7, with_rows=True).as_numpy_iterator())
    rows = np.concatenate([b[2] for b in batches])
    np.testing.assert_array_equal(rows, np.arange(len(clean)))
    assert [len(b[1]) for b in batches][-1] == len(clean) % 7 or len(clean) % 7 == 0
    images = np.concatenate([b[0] for b in batches])
    for row, image in enumerate(images):
        assert _colour_label(image) == clean.labels[row] or _grey_ok(None, image, clean, row, fake)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        data.eval_dataset(clean, RAW, batch_size=0)


def test_bbox_crop_pipeline_and_keras_fit(cub):
    import keras

    _, index = cub
    prep = data.ImagePreprocessing(crop_size=16, resize=20, mode="inception", bbox_crop=True)
    train = index.train()
    eligible = data.check_images(train).ok
    sampler = data.ClassBalancedSampler(train.labels, 2, 2, seed=0, eligible=eligible)
    ds = data.sampler_batches(train, sampler, prep, num_steps=2)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=lambda y, e: keras.ops.mean(keras.ops.square(e)))
    history = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_quick_check_flags_truncation_and_confirms_by_decoding(tmp_path):
    from symm_keras.data.image_check import looks_truncated

    fake = fixtures.make_cub(str(tmp_path), corrupt=True, png=True, grey=True)
    index = data.load_split_index("cub", str(tmp_path))
    paths = dict(zip(index.paths, index.full_paths()))
    assert looks_truncated(paths[fake.corrupt[0]])
    assert not any(looks_truncated(p) for rel, p in paths.items() if rel not in fake.corrupt)
    padded = paths[fake.grey[0]]
    with open(padded, "ab") as f:
        f.write(b"\0" * 200)  # trailing padding after the JPEG end marker: flagged, but decodes
    assert looks_truncated(padded)
    with pytest.warns(UserWarning, match="skipping 1 of"):
        check = data.check_images(index, thorough=False)
    assert check.corrupt_paths == tuple(fake.corrupt)


def test_triplet_feed_in_model_fit_mined_before_each_epoch(cub):
    """Mine with predict(), then fit the epoch's finite stream: no waiting, no thread handoff."""
    import keras

    _, index = cub
    train = index.train()
    prep = data.ImagePreprocessing(crop_size=16, resize=20, mode="inception")
    feed = data.TripletFeed(train, triplets_per_batch=2, steps_per_epoch=3, preprocessing=prep)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=lambda y, e: keras.ops.mean(keras.ops.square(e)))
    labels = train.labels
    losses = []
    for epoch in range(3):
        embeddings = model.predict(data.eval_dataset(train, prep, batch_size=16), verbose=0)
        assert len(embeddings) == len(train) - 1  # the corrupt image is left out
        rng = np.random.default_rng(epoch)
        anchors = rng.permutation(len(train))[:6]
        triplets = [
            (a, rng.choice(np.flatnonzero((labels == labels[a]) & (np.arange(len(train)) != a))),
             rng.choice(np.flatnonzero(labels != labels[a])))
            for a in anchors
        ]
        feed.set_triplets(np.array(triplets), epoch=epoch)
        history = model.fit(feed.dataset(start_step=3 * epoch, num_steps=3), steps_per_epoch=3,
                            initial_epoch=epoch, epochs=epoch + 1, verbose=0)  # fmt: skip
        losses += history.history["loss"]
    assert len(losses) == 3 and np.isfinite(losses).all()
    with pytest.raises(Exception, match="no triplets were set for epoch 3"):
        next(iter(feed.dataset(start_step=9, num_steps=1)))
