"""P×K class-balanced batches of arrays held in memory, for ``model.fit`` on any Keras backend.

::

    batches = PKArrayBatches(x, y, classes_per_batch=16, images_per_class=4, seed=0)
    model.fit(batches, epochs=10, shuffle=False)    # len(batches) steps per epoch

The image pipelines (:mod:`symm_keras.data.pipelines`) need TensorFlow; this
needs only NumPy and Keras (a ``keras.utils.PyDataset``), so it trains on the
JAX, TensorFlow and torch backends alike. Rows come from
:class:`~symm_keras.data.samplers.ClassBalancedSampler` (layout ``[c1 × K,
…, cP × K]``, every row visited at least once per sampler epoch): batch ``i``
of epoch ``e`` is ``sampler.batch_rows(e · steps_per_epoch + i)``, a pure
function of ``(seed, e, i)``. The epoch count advances when a batch is asked
for again after all ``steps_per_epoch`` batches were served: the batch that
``fit`` peeks to build the model (JAX) is then served again, unchanged, in
epoch 0 (with a single batch per epoch the peek counts as epoch 0), and
``fit(steps_per_epoch=...)`` other than ``len(batches)`` still walks whole
epochs. Keras's ``on_epoch_begin``/``on_epoch_end`` hooks cannot count
epochs: ``fit`` also calls them around that peek. Resume a run at
``fit(initial_epoch=e)`` with ``start_epoch=e``; give ``validation_data`` its
own object. ``fit``'s default ``shuffle=True`` permutes the order of an
epoch's batches (not their contents) with Python's global RNG: pass
``shuffle=False`` to get them in order. Use threads (``workers``), not
``use_multiprocessing``, so worker processes see the epoch count.
"""

import threading

import keras
import numpy as np

from symm_keras.data.samplers import ClassBalancedSampler

SMALL_CLASS_RULES = ("error", "repeat", "drop")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_arrays(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must be an array with one row per example, got shape {x.shape}.")
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of class ids, got shape {y.shape}.")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class ids, got dtype {y.dtype}.")
    if x.dtype.kind not in "biufc":
        raise ValueError(f"x must be a numeric array, got dtype {x.dtype}.")
    if x.dtype.kind in "fc":
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if bad.size:
            raise ValueError(f"x has NaN or infinite values in {bad.size} rows, e.g. rows {bad[:10].tolist()}.")
    return x, y


class PKArrayBatches(keras.utils.PyDataset):
    """``(x[rows], y[rows])`` batches of ``classes_per_batch`` (P) classes × ``images_per_class`` (K) rows.

    Args:
        x: ``(n, ...)`` numeric array (NaN / inf rejected).
        y: ``(n,)`` integer class ids.
        classes_per_batch: P.
        images_per_class: K.
        seed: int; batch ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``.
        steps_per_epoch: batches per epoch (default: the sampler's epoch,
            ``ClassBalancedSampler.steps_per_epoch``).
        small_classes: a class with fewer than K rows is an error (``"error"``,
            default), has its rows repeated within its group (``"repeat"``) or
            is never sampled (``"drop"``).
        start_epoch: the epoch the first ``fit`` epoch is (for ``initial_epoch``).
        **kwargs: ``keras.utils.PyDataset`` arguments (``workers``, ``max_queue_size``).
    """

    def __init__(
        self,
        x,
        y,
        classes_per_batch,
        images_per_class,
        seed=0,
        steps_per_epoch=None,
        small_classes="error",
        start_epoch=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kwargs.get("use_multiprocessing"):
            raise ValueError(
                "PKArrayBatches counts epochs in the main process: use workers (threads), not use_multiprocessing."
            )
        self.x, self.y = _check_arrays(x, y)
        if small_classes not in SMALL_CLASS_RULES:
            raise ValueError(f"small_classes must be one of {SMALL_CLASS_RULES}, got {small_classes!r}.")
        if small_classes == "error" and _is_int(images_per_class):
            classes, counts = np.unique(self.y, return_counts=True)
            small = np.flatnonzero(counts < images_per_class)
            if small.size:
                examples = ", ".join(f"class {classes[i]} has {counts[i]}" for i in small[:5])
                raise ValueError(
                    f"{small.size} classes have fewer than images_per_class={images_per_class} rows ({examples}). "
                    "Pass small_classes='repeat' (repeat their rows within a group) or 'drop' (never sample them)."
                )
        self.sampler = ClassBalancedSampler(
            self.y,
            classes_per_batch,
            images_per_class,
            seed=seed,
            small_classes="repeat" if small_classes == "error" else small_classes,
        )
        if steps_per_epoch is None:
            steps_per_epoch = self.sampler.steps_per_epoch
        if not _is_int(steps_per_epoch) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive int or None, got {steps_per_epoch!r}.")
        if not _is_int(start_epoch) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an int >= 0, got {start_epoch!r}.")
        self.steps_per_epoch = int(steps_per_epoch)
        self.epoch = int(start_epoch)
        self._served = set()  # batch indices served in ``self.epoch``
        self._lock = threading.Lock()  # PyDataset workers are threads

    @property
    def batch_size(self):
        return self.sampler.batch_size

    def __len__(self):
        return self.steps_per_epoch

    def batch_rows(self, index, epoch=None):
        """Rows of batch ``index`` of ``epoch`` (default: the current epoch)."""
        if not 0 <= int(index) < self.steps_per_epoch:
            raise IndexError(f"batch index {index} is outside 0-{self.steps_per_epoch - 1}.")
        epoch = self.epoch if epoch is None else int(epoch)
        return self.sampler.batch_rows(epoch * self.steps_per_epoch + int(index))

    def __getitem__(self, index):
        index = int(index)
        with self._lock:
            if index in self._served and len(self._served) == self.steps_per_epoch:
                self.epoch += 1
                self._served = set()
            self._served.add(index)
            epoch = self.epoch
        rows = self.batch_rows(index, epoch)
        return self.x[rows], self.y[rows]
