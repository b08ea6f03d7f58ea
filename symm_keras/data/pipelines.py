"""tf.data pipelines: sampler rows → decoded, augmented, batched images.

Every training pipeline yields ``(images, labels)`` batches — images float32
``(B, crop, crop, 3)`` normalised by :class:`ImagePreprocessing`, labels int32
``(B,)`` (the dataset's own class ids) — or ``(images, labels, rows)`` with
``with_rows=True`` (the index rows, for custom loops). They are infinite
unless ``num_steps`` is given; pass ``steps_per_epoch`` to ``model.fit``.

Resuming: batch ``step`` (rows, crops and flips) is a pure function of
``(seed, step)``; ``start_step=s`` continues exactly where step ``s - 1`` ended.

Before anything is built, missing files raise ``MissingFilesError`` with the
list. Corrupt images are then looked for (``validate``): ``"quick"``
(default) reads each file's first/last 64 bytes and decodes only the files
that look truncated; ``"decode"`` decodes every image once; ``"exist"`` and
``"none"`` skip this (``"none"`` also skips the missing-file check; so do
pipelines given ``encoded_images``, the prepared bytes of every row). Corrupt
images are skipped (``on_corrupt="skip"``: counted, warned with the paths,
never sampled, labels untouched) or fail the run (``on_corrupt="fail"``). A
file damaged inside its data that only ``"decode"`` would catch stops
iteration (and ``model.fit``) with an ``InvalidArgumentError`` whose message
names the file and its index row and points at ``python -m data_prep.prepare
--check decode`` (or ``validate="decode"``): each image's transform runs under
``ignore_errors`` and a graph-side check of the element ids stops at the
first element that went missing (:func:`_map_rows`).
"""

import numpy as np
import tensorflow as tf

from symm_keras.data.image_check import check_images
from symm_keras.data.preprocessing import ImagePreprocessing
from symm_keras.data.samplers import AsymmetricSampler, ClassBalancedSampler, TripletSampler
from symm_keras.data.split_index import SplitIndex

AUTOTUNE = tf.data.AUTOTUNE
VALIDATE = ("quick", "decode", "exist", "none")
_ENDLESS = 2**62


def _check_index(index, function):
    if not isinstance(index, SplitIndex):
        raise TypeError(
            f"{function} takes a SplitIndex of image files (symm_keras.data.load_split_index), got "
            f"{type(index).__name__}. For arrays in memory use symm_keras.data.PKArrayBatches(x, y, "
            "classes_per_batch, images_per_class, seed=0) with model.fit (no TensorFlow needed)."
        )
    return index


def eligible_rows(index, validate="quick", on_corrupt="skip"):
    """Rows that may be sampled, after the checks chosen by ``validate`` (module docstring)."""
    _check_index(index, "eligible_rows")
    if validate not in VALIDATE:
        raise ValueError(f"validate must be one of {VALIDATE}, got {validate!r}.")
    if len(index) == 0:
        raise ValueError(f"the index of {index.root} has no images.")
    if validate in ("quick", "decode"):
        return check_images(index, on_corrupt=on_corrupt, thorough=validate == "decode").eligible_rows
    if validate == "exist":
        index.check_files()
    return np.arange(len(index))


class _ImageTable:
    """Index columns as constants, and the per-row image transforms."""

    def __init__(self, index, preprocessing, encoded_images=None):
        self.preprocessing = preprocessing or ImagePreprocessing()
        if not isinstance(self.preprocessing, ImagePreprocessing):
            raise TypeError(f"preprocessing must be an ImagePreprocessing, got {type(preprocessing).__name__}.")
        self.paths = tf.constant(index.full_paths())
        self.labels = tf.constant(np.asarray(index.labels, dtype=np.int32))
        self.bboxes = None
        if self.preprocessing.bbox_crop:
            if index.bboxes is None:
                raise ValueError(f"bbox_crop=True but the {index.dataset} index has no bounding boxes.")
            self.bboxes = tf.constant(np.asarray(index.bboxes, dtype=np.float32))
        self.encoded = None
        if encoded_images is not None:
            if len(encoded_images) != len(index):
                raise ValueError(f"encoded_images has {len(encoded_images)} entries but the index has {len(index)} rows.")
            self.encoded = tf.constant(list(encoded_images), dtype=tf.string)

    def read(self, row):
        if self.encoded is not None:
            return tf.gather(self.encoded, row)
        return tf.io.read_file(tf.gather(self.paths, row))

    def _box(self, row):
        return None if self.bboxes is None else tf.gather(self.bboxes, row)

    def train(self, row, element_id, seed):
        encoded = self.read(row)
        image_seed = tf.stack([tf.constant(seed, tf.int64), element_id])
        image = self.preprocessing.train_image(encoded, image_seed, self._box(row))
        return image, tf.gather(self.labels, row), row

    def test(self, row):
        encoded = self.read(row)
        return self.preprocessing.test_image(encoded, self._box(row)), tf.gather(self.labels, row), row


def _drop_rows(images, labels, rows):
    return images, labels


def _map_rows(elements, transform, row_of, index, first, count, num_parallel_calls):
    """``transform(row, element)`` over ``(row, element id)`` pairs, in order; a failure names its file.

    Failed elements are dropped by ``ignore_errors``; a scan over the element
    ids (consecutive from ``first``) then stops at the first gap with an
    assertion naming the missing element's path (``row_of(element)`` gives its
    row; computed only then). A finite stream (``count`` elements) ends with a
    sentinel so a failure of its last element is caught too; ``take(count)``
    keeps the sentinel out. Everything runs in the tf.data graph; the
    cardinality stays known (``count``, or infinite).
    """
    mapped = elements.map(
        lambda row, element: (*transform(row, element), element),
        num_parallel_calls=num_parallel_calls,
        deterministic=True,
    ).ignore_errors()
    if count is not None:
        blank = tf.nest.map_structure(
            lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype), mapped.element_spec[:3]
        )
        mapped = mapped.concatenate(tf.data.Dataset.from_tensors((*blank, tf.constant(first + count, tf.int64))))
    paths = tf.constant(index.full_paths())
    hint = (
        f"does not decode (damaged or not an image) or cannot be read. Run `python -m data_prep.prepare "
        f"--dataset {index.dataset} --root <dataset folder> --check decode` to find every such file and leave it "
        "out of split_index.csv, or build the pipeline with `validate=decode` (every image decoded once first)."
    )

    def check(expected, element):
        def fail():
            row = row_of(expected)
            parts = ["input pipeline: image ", tf.gather(paths, row), " (index row ", tf.strings.as_string(row), ") "]
            stop = tf.debugging.Assert(False, [tf.strings.join([*parts, hint])])
            with tf.control_dependencies([stop]):
                return tf.identity(expected)

        seen = tf.cond(tf.equal(element[3], expected), lambda: expected, fail)
        return seen + 1, element[:3]

    checked = mapped.scan(tf.constant(first, tf.int64), check)
    if count is None:  # keep the cardinality Keras reads (ignore_errors makes it unknown)
        return checked.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    return checked.take(count).apply(tf.data.experimental.assert_cardinality(count))


def sampler_batches(
    index,
    sampler,
    preprocessing=None,
    seed=0,
    start_step=0,
    num_steps=None,
    with_rows=False,
    num_parallel_calls=AUTOTUNE,
    prefetch=AUTOTUNE,
    encoded_images=None,
):
    """Batches of ``sampler.batch_rows(step)`` for ``step = start_step, start_step + 1, …``.

    ``sampler`` is any object with ``batch_size`` and ``batch_rows(step)``
    (see :mod:`symm_keras.data.samplers`); the rows index ``index``.
    File checks are the caller's (the samplers' ``eligible`` rows).
    ``encoded_images``: optional per-row encoded bytes held in memory
    (:func:`symm_keras.data.tfrecords.load_encoded_images`) instead of file reads.
    """
    _check_index(index, "sampler_batches")
    start_step = int(start_step)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}.")
    if num_steps is not None and int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive int or None, got {num_steps!r}.")
    table = _ImageTable(index, preprocessing, encoded_images)
    batch_size = int(sampler.batch_size)
    end = _ENDLESS if num_steps is None else start_step + int(num_steps)

    def rows_of(step):
        rows = tf.numpy_function(lambda s: np.asarray(sampler.batch_rows(s), np.int64), [step], tf.int64)
        rows = tf.ensure_shape(rows, [batch_size])
        return rows, step * batch_size + tf.range(batch_size, dtype=tf.int64)

    dataset = _map_rows(
        tf.data.Dataset.range(start_step, end).map(rows_of).unbatch(),
        lambda row, element: table.train(row, element, seed),
        lambda element: rows_of(element // batch_size)[0][element % batch_size],
        index,
        first=start_step * batch_size,
        count=None if num_steps is None else int(num_steps) * batch_size,
        num_parallel_calls=num_parallel_calls,
    )
    dataset = dataset.batch(batch_size, drop_remainder=True)
    if not with_rows:
        dataset = dataset.map(_drop_rows)
    return dataset.prefetch(prefetch)


def pk_batches(
    index,
    classes_per_batch=64,
    images_per_class=2,
    preprocessing=None,
    seed=0,
    start_step=0,
    num_steps=None,
    small_classes="repeat",
    validate="quick",
    on_corrupt="skip",
    with_rows=False,
    num_parallel_calls=AUTOTUNE,
    encoded_images=None,
):
    """P×K class-balanced training batches (see :class:`ClassBalancedSampler`).

    Layout: ``[c1 × K, c2 × K, …, cP × K]``, P distinct classes. Use
    ``ClassBalancedSampler(index.labels, P, K, seed).steps_per_epoch`` for
    ``model.fit(steps_per_epoch=…)``. For arrays in memory use
    :class:`~symm_keras.data.array_batches.PKArrayBatches`.
    """
    _check_index(index, "pk_batches")
    rows = eligible_rows(index, validate if encoded_images is None else "none", on_corrupt)
    sampler = ClassBalancedSampler(
        index.labels, classes_per_batch, images_per_class, seed=seed, small_classes=small_classes, eligible=rows
    )
    return sampler_batches(
        index, sampler, preprocessing, seed, start_step, num_steps, with_rows, num_parallel_calls,
        encoded_images=encoded_images,
    )


def asymmetric_batches(
    index,
    classes_per_batch=30,
    images_per_class=2,
    shuffled_size=None,
    neat_pool_batches=None,
    shuffled_pool_batches=None,
    preprocessing=None,
    seed=0,
    start_step=0,
    num_steps=None,
    small_classes="repeat",
    validate="quick",
    on_corrupt="skip",
    with_rows=False,
    num_parallel_calls=AUTOTUNE,
    encoded_images=None,
):
    """DAMLRRM asymmetric batches (see :class:`AsymmetricSampler`).

    Layout: the first ``m·k`` rows are the neat batch ``B^x`` (class-grouped),
    the last ``shuffled_size`` rows the shuffled batch ``B^s``.
    """
    _check_index(index, "asymmetric_batches")
    rows = eligible_rows(index, validate if encoded_images is None else "none", on_corrupt)
    sampler = AsymmetricSampler(
        index.labels,
        classes_per_batch,
        images_per_class,
        shuffled_size=shuffled_size,
        neat_pool_batches=neat_pool_batches,
        shuffled_pool_batches=shuffled_pool_batches,
        seed=seed,
        small_classes=small_classes,
        eligible=rows,
    )
    return sampler_batches(
        index, sampler, preprocessing, seed, start_step, num_steps, with_rows, num_parallel_calls,
        encoded_images=encoded_images,
    )


class TripletFeed:
    """A training feed of mined (anchor, positive, negative) triplets, replaced every epoch.

    Usage (Smart Mining), one ``fit`` per epoch::

        feed = TripletFeed(train_index, triplets_per_batch=40, steps_per_epoch=150)
        for epoch in range(30):
            feed.set_triplets(mine(model, epoch), epoch=epoch)    # (n, 3) rows of train_index
            model.fit(feed.dataset(start_step=epoch * 150, num_steps=150), steps_per_epoch=150,
                      initial_epoch=epoch, epochs=epoch + 1)

    An epoch's triplets are set before its batches are built, and each
    epoch's stream is finite, so the pipeline never runs ahead of the mining
    (no waiting, the same on every backend).

    Batches are ``[anchors; positives; negatives]`` (``3·t`` images, rows ``i``,
    ``t+i``, ``2t+i`` form triplet ``i``); see :class:`TripletSampler` for the
    epoch rule and the reuse policy. Triplet rows are row numbers of
    ``index`` — the order ``eval_dataset(index)`` embeds them in.
    """

    def __init__(
        self,
        index,
        triplets_per_batch,
        steps_per_epoch,
        preprocessing=None,
        seed=0,
        reuse_previous=False,
        validate="quick",
        on_corrupt="skip",
        encoded_images=None,
    ):
        self.index = _check_index(index, "TripletFeed")
        self.encoded_images = encoded_images
        self.eligible = eligible_rows(index, validate if encoded_images is None else "none", on_corrupt)
        self._eligible_mask = np.zeros(len(index), dtype=bool)
        self._eligible_mask[self.eligible] = True
        self.preprocessing = preprocessing
        self.seed = int(seed)
        self.sampler = TripletSampler(
            len(index), triplets_per_batch, steps_per_epoch, seed=seed, reuse_previous=reuse_previous
        )

    @property
    def steps_per_epoch(self):
        return self.sampler.steps_per_epoch

    @property
    def triplets_per_batch(self):
        return self.sampler.triplets_per_batch

    def set_triplets(self, triplets, epoch):
        """Triplets (``(n, 3)`` index rows) for epoch ``epoch``; those touching skipped images are dropped."""
        triplets = np.asarray(triplets)
        if triplets.ndim == 2 and triplets.shape[1] == 3 and np.issubdtype(triplets.dtype, np.integer):
            inside = (triplets >= 0) & (triplets < len(self.index))
            if inside.all() and len(triplets):
                keep = self._eligible_mask[triplets].all(axis=1)
                if not keep.any():
                    raise ValueError(f"all {len(triplets)} triplets use skipped (corrupt) rows of the index.")
                triplets = triplets[keep]
        self.sampler.set_triplets(triplets, epoch)

    def dataset(self, start_step=0, num_steps=None, epochs=None, with_rows=False, num_parallel_calls=AUTOTUNE):
        """Batches from global step ``start_step``: ``num_steps`` of them, or up to the end of
        epoch ``epochs - 1`` (every epoch's triplets set beforehand), or endless."""
        if epochs is not None:
            if num_steps is not None:
                raise ValueError("pass epochs or num_steps, not both.")
            num_steps = int(epochs) * self.steps_per_epoch - int(start_step)
            if num_steps < 1:
                raise ValueError(f"start_step={start_step} is past the end of {epochs} epochs.")
        return sampler_batches(
            self.index, self.sampler, self.preprocessing, self.seed, start_step, num_steps, with_rows, num_parallel_calls,
            encoded_images=self.encoded_images,
        )


def eval_dataset(
    index,
    preprocessing=None,
    batch_size=128,
    validate="quick",
    on_corrupt="skip",
    with_rows=False,
    num_parallel_calls=AUTOTUNE,
    encoded_images=None,
):
    """Test-transform batches of ``index`` in row order (resize + centre crop), no repeat.

    Yields ``(images, labels)`` (or ``(images, labels, rows)``); the final batch may
    be smaller. Corrupt rows found by ``validate`` (``"quick"`` or ``"decode"``)
    with ``on_corrupt="skip"`` are left out: use ``with_rows=True`` to know
    which rows were embedded.
    """
    _check_index(index, "eval_dataset")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    rows = eligible_rows(index, validate if encoded_images is None else "none", on_corrupt).astype(np.int64)
    table = _ImageTable(index, preprocessing, encoded_images)
    dataset = _map_rows(
        tf.data.Dataset.from_tensor_slices((rows, np.arange(len(rows), dtype=np.int64))),
        lambda row, element: table.test(row),
        lambda element: tf.gather(tf.constant(rows), element),
        index,
        first=0,
        count=len(rows),
        num_parallel_calls=num_parallel_calls,
    )
    dataset = dataset.batch(int(batch_size))
    if not with_rows:
        dataset = dataset.map(_drop_rows)
    return dataset.prefetch(AUTOTUNE)
