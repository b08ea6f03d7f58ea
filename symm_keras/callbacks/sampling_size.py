"""Sampling size: how many images a training run actually draws (DAMLRRM Table 6).

DAMLRRM (Xu et al., CVPR 2019, Sec. 4.4, Table 6) compares methods by their
"# Sampling Size": the images in the training pools the batches are cut from
(36K for its asymmetric streams vs 500K–700K for N-pair and lifted structure
on CUB). A pooled sampler (``symm_keras.data.AsymmetricSampler``: neat pool of
``Lx`` batches, shuffled pool of ``Ls`` batches, cycled) keeps re-using pool
entries, so its sampling size stops growing at ``N^x + N^s``; a sampler that
draws fresh batches every step (P×K) has a sampling size equal to the images
drawn.

:class:`SamplingSizeCounter` replays a sampler's ``batch_rows(step)`` and
counts, up to the current step:

* ``images_drawn`` — batch size × steps (images pushed through the network);
* ``sampling_size`` — distinct pool entries drawn (pooled samplers), else
  ``images_drawn``;
* ``distinct_images`` — distinct dataset rows among them (≤ training-set size;
  CUB has 5,864 training images, so Table 6's 36K counts pool entries, not
  distinct images).

:class:`SamplingSize` is the Keras callback that keeps the counter in step
with training and puts the three numbers in ``logs`` (and optionally in a
summary writer).
"""

import math

import keras
import numpy as np

SAMPLING_KEYS = ("sampling_size", "distinct_images", "images_drawn")


class SamplingSizeCounter:
    """Counts what a sampler has drawn in steps ``0 … steps − 1``.

    Args:
        sampler: object with ``batch_size`` and ``batch_rows(step)`` (the
            ``symm_keras.data`` samplers). Samplers with ``neat_pool_batches``,
            ``shuffled_pool_batches``, ``neat_size`` and ``shuffled_size``
            (``AsymmetricSampler``) are counted per pool entry.
    """

    def __init__(self, sampler):
        if not hasattr(sampler, "batch_rows") or not hasattr(sampler, "batch_size"):
            raise TypeError(
                f"sampler must have batch_size and batch_rows(step) (a symm_keras.data sampler), "
                f"got {type(sampler).__name__}."
            )
        self.sampler = sampler
        self.batch_size = int(sampler.batch_size)
        self._pooled = all(
            hasattr(sampler, name)
            for name in ("neat_pool_batches", "shuffled_pool_batches", "neat_size", "shuffled_size")
        )
        self.reset()

    def reset(self):
        self.steps = 0
        self._seen_rows = np.zeros(0, dtype=bool)
        self._neat_slots = set()
        self._shuffled_slots = set()

    @property
    def period(self):
        """Steps after which the batches repeat (``None``: never)."""
        if self._pooled:
            return math.lcm(int(self.sampler.neat_pool_batches), int(self.sampler.shuffled_pool_batches))
        return None

    def _record(self, step):
        rows = np.asarray(self.sampler.batch_rows(step), dtype=np.int64).reshape(-1)
        if rows.size and rows.min() < 0:
            raise ValueError(f"sampler returned a negative row index at step {step}.")
        if rows.size and rows.max() >= self._seen_rows.size:
            grown = np.zeros(max(int(rows.max()) + 1, 2 * self._seen_rows.size), dtype=bool)
            grown[: self._seen_rows.size] = self._seen_rows
            self._seen_rows = grown
        self._seen_rows[rows] = True
        if self._pooled:
            self._neat_slots.add(step % int(self.sampler.neat_pool_batches))
            self._shuffled_slots.add(step % int(self.sampler.shuffled_pool_batches))

    def advance_to(self, steps):
        """Account for every step below ``steps`` (replays from 0 if ``steps`` went back)."""
        steps = int(steps)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}.")
        if steps < self.steps:
            self.reset()
        period = self.period
        # Batches repeat after one period: nothing new to see beyond it.
        last_new = steps if period is None else min(steps, period)
        for step in range(min(self.steps, last_new), last_new):
            self._record(step)
        self.steps = steps

    def step(self):
        """Account for one more step."""
        self.advance_to(self.steps + 1)

    @property
    def images_drawn(self):
        return self.steps * self.batch_size

    @property
    def distinct_images(self):
        return int(self._seen_rows.sum())

    @property
    def sampling_size(self):
        if not self._pooled:
            return self.images_drawn
        return len(self._neat_slots) * int(self.sampler.neat_size) + len(self._shuffled_slots) * int(
            self.sampler.shuffled_size
        )

    def result(self):
        """``{"sampling_size", "distinct_images", "images_drawn"}`` as ints."""
        return {
            "sampling_size": int(self.sampling_size),
            "distinct_images": self.distinct_images,
            "images_drawn": int(self.images_drawn),
        }


class SamplingSize(keras.callbacks.Callback):
    """Keras callback reporting the sampling size of a run (DAMLRRM Table 6).

    Args:
        sampler: the sampler whose ``batch_rows(step)`` feeds training.
        start_step: global step of the first batch of the next ``fit`` call
            (resumed runs); ignored when ``global_step`` is given.
        global_step: optional zero-argument callable returning the number of
            steps already trained when ``fit`` starts (read in
            ``on_train_begin``); lets one callback follow several ``fit``
            calls and resumes.
        summary_writer: optional object with ``scalar(tag, value, step)``
            (e.g. ``experiments.summaries.SummaryWriter``); written every
            ``log_every`` steps and at epoch ends.
        log_every: steps between writes to ``summary_writer``.

    Every batch and epoch end adds ``sampling_size``, ``distinct_images`` and
    ``images_drawn`` to ``logs`` (so ``keras.callbacks.TensorBoard`` and
    ``History`` placed after this callback record them).
    """

    def __init__(self, sampler, start_step=0, global_step=None, summary_writer=None, log_every=100):
        super().__init__()
        self.counter = SamplingSizeCounter(sampler)
        self.start_step = int(start_step)
        if self.start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}.")
        if global_step is not None and not callable(global_step):
            raise TypeError("global_step must be a zero-argument callable returning the current step.")
        if int(log_every) < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}.")
        self.global_step = global_step
        self.summary_writer = summary_writer
        self.log_every = int(log_every)
        self._next_start = self.start_step

    def result(self):
        return self.counter.result()

    def _write(self):
        if self.summary_writer is None:
            return
        for key, value in self.counter.result().items():
            self.summary_writer.scalar(key, float(value), self.counter.steps)

    def on_train_begin(self, logs=None):
        start = int(self.global_step()) if self.global_step is not None else self._next_start
        self.counter.advance_to(start)

    def on_train_batch_end(self, batch, logs=None):
        self.counter.step()
        self._next_start = self.counter.steps
        if logs is not None:
            logs.update(self.counter.result())
        if self.counter.steps % self.log_every == 0:
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.counter.result())
        self._write()
