"""Training/test data sources that ``experiments/train.py`` hands to methods.

Two kinds, with one interface (``labels``, ``pk_batches``, ``eval_arrays`` /
``eval_dataset``, ``thumbnails``):

* :class:`ArraySource` — in-memory feature vectors (scikit-learn digits for
  ``make demo``, synthetic clusters in tests). Its P×K sampler is stateless:
  batch ``s`` is drawn from ``numpy.random.default_rng([seed, s])``, so a
  resumed run restores the sampler position from the step alone.
* :class:`ImageSource` — an image dataset through ``symm_keras.data`` (split
  index, preprocessing, tf.data P×K pipeline). ``symm_keras.data`` samplers
  are pure functions of (seed, step), so the pipeline restarts at a step with
  ``start_step``.
"""

import numpy as np


def _check_pk(labels, classes_per_batch, images_per_class, what):
    if classes_per_batch < 2:
        raise ValueError(f"classes_per_batch must be >= 2 (need negatives), got {classes_per_batch}")
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be >= 1, got {images_per_class}")
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= images_per_class]
    if len(eligible) < classes_per_batch:
        raise ValueError(
            f"{what}: a P×K batch needs {classes_per_batch} classes with >= {images_per_class} images each, "
            f"but only {len(eligible)} of {len(classes)} classes have that many; lower --batch_size / "
            "--classes_per_batch"
        )
    return eligible


def array_batches(x, labels, rows_of, batch_size, start_step=0, num_steps=None):
    """tf.data stream of ``(x[rows_of(s)], labels[rows_of(s)])`` for ``s = start_step, …``
    (``num_steps`` batches, or endless): the batch stream of every in-memory method."""
    import tensorflow as tf

    def generate():
        step, end = int(start_step), None if num_steps is None else int(start_step) + int(num_steps)
        while end is None or step < end:
            rows = rows_of(step)
            yield x[rows], labels[rows].astype("int32")
            step += 1

    signature = (
        tf.TensorSpec((batch_size,) + tuple(x.shape[1:]), tf.float32),
        tf.TensorSpec((batch_size,), tf.int32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


class ArraySource:
    """Features ``x`` (N, ...) and integer labels ``y`` (N,) held in memory."""

    kind = "arrays"

    def __init__(self, x, y, name="arrays"):
        x = np.asarray(x, dtype="float32")
        y = np.asarray(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: inputs contain NaN or inf")
        self.x, self.labels, self.name = x, y.astype("int64"), name

    @property
    def input_shape(self):
        return self.x.shape[1:]

    def __len__(self):
        return len(self.labels)

    def pk_indices(self, classes_per_batch, images_per_class, seed, step):
        """Row indices of batch ``step``: P classes × K images, class-major."""
        eligible = _check_pk(self.labels, classes_per_batch, images_per_class, self.name)
        rng = np.random.default_rng([int(seed), int(step)])
        chosen = rng.choice(eligible, size=classes_per_batch, replace=False)
        rows = [rng.choice(np.flatnonzero(self.labels == c), size=images_per_class, replace=False) for c in chosen]
        return np.concatenate(rows)

    def pk_batches(self, classes_per_batch, images_per_class, seed, start_step=0, num_steps=None):
        """tf.data stream of (x, y) P×K batches from ``start_step`` on (``num_steps`` of them, or endless)."""
        _check_pk(self.labels, classes_per_batch, images_per_class, self.name)
        rows = lambda step: self.pk_indices(classes_per_batch, images_per_class, seed, step)  # noqa: E731
        return array_batches(self.x, self.labels, rows, classes_per_batch * images_per_class, start_step, num_steps)

    def describe(self):
        """What ``experiments.evaluate --run`` needs to rebuild this split."""
        return {"kind": self.kind, "name": self.name}

    def eval_arrays(self):
        return self.x, self.labels

    def thumbnails(self, rows):
        """uint8 images (n, h, w, 3) for the nearest-neighbour grid (square-ish reshape of the features)."""
        feats = self.x[np.asarray(rows)]
        flat = feats.reshape(len(feats), -1)
        side = int(np.ceil(np.sqrt(flat.shape[1])))
        padded = np.zeros((len(flat), side * side), "float32")
        padded[:, : flat.shape[1]] = flat
        lo, hi = padded.min(axis=1, keepdims=True), padded.max(axis=1, keepdims=True)
        img = (255 * (padded - lo) / np.maximum(hi - lo, 1e-12)).astype("uint8").reshape(-1, side, side, 1)
        return np.repeat(img, 3, axis=-1)


class ImageSource:
    """One split of an image dataset read through ``symm_keras.data``."""

    kind = "images"

    def __init__(self, index, preprocessing, name="images", data_root=None):
        self.data_root = data_root  # the dataset directory it was loaded from (recorded for evaluate --run)
        self.index = index
        self.preprocessing = preprocessing
        self.name = name
        self.labels = np.asarray(index.labels).astype("int64")

    def __len__(self):
        return len(self.labels)

    def pk_batches(self, classes_per_batch, images_per_class, seed, start_step=0, num_steps=None):
        from symm_keras import data

        _check_pk(self.labels, classes_per_batch, images_per_class, self.name)
        return data.pk_batches(self.index, classes_per_batch, images_per_class, self.preprocessing, seed=seed,
                               start_step=int(start_step), num_steps=num_steps)  # fmt: skip

    def describe(self):
        """What ``experiments.evaluate --run`` needs to rebuild this split: dataset, root, test transform."""
        prep = self.preprocessing
        return {"kind": self.kind, "name": self.name, "dataset": self.index.dataset, "root": self.data_root,
                "input_size": prep.crop_size, "resize": prep.resize, "preprocessing": prep.mode}  # fmt: skip

    def eval_dataset(self, batch_size=128):
        from symm_keras import data

        return data.eval_dataset(self.index, self.preprocessing, batch_size=batch_size)

    def thumbnails(self, rows, size=96):
        from PIL import Image

        out, paths = [], self.index.full_paths()
        for r in np.asarray(rows):
            with Image.open(paths[int(r)]) as im:
                out.append(np.asarray(im.convert("RGB").resize((size, size))))
        return np.stack(out)
