"""Batch samplers: which index rows make up training batch number ``step``.

Every sampler is a pure function of ``(seed, step)`` (``batch_rows(step)``),
so resuming training at step ``s`` needs only the step counter that the
checkpoint already holds. The tf.data pipelines in
:mod:`symm_keras.data.pipelines` turn these row numbers into images.

* :class:`ClassBalancedSampler` — P×K batches (Symm / N-pair layout).
* :class:`AsymmetricSampler` — DAMLRRM neat + shuffled batches (Sec. 3.2).
* :class:`TripletSampler` — externally mined (anchor, positive, negative)
  triplets replaced every epoch (Smart Mining, Sec. 3).
"""

import concurrent.futures
import math
import threading

import numpy as np

SMALL_CLASS_RULES = ("repeat", "drop")


def _rng(seed, *keys):
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _labels_vector(labels):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array of class ids, got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}.")
    return labels


def _eligible_rows(labels, eligible):
    if eligible is None:
        return np.arange(len(labels))
    eligible = np.asarray(eligible)
    if eligible.dtype == bool:
        if eligible.shape != labels.shape:
            raise ValueError(f"eligible mask must have shape {labels.shape}, got {eligible.shape}.")
        eligible = np.flatnonzero(eligible)
    return np.sort(eligible.astype(np.int64))


class ClassBalancedSampler:
    """P×K class-balanced batches: ``classes_per_batch`` (P) distinct classes × ``images_per_class`` (K).

    Batch layout: class-grouped, ``[c1 × K, c2 × K, …, cP × K]``; with K = 2 each
    class appears exactly twice (the Symm / N-pair setting; the released Symm code
    uses 64 × 2 = 128, the paper states batch 128).

    One epoch visits every image at least once: each class's images are
    shuffled and cut into groups of K (a short last group is topped up with
    other images of the same class); ``steps_per_epoch = max(ceil(G / P),
    max_c G_c)`` for ``G_c`` groups of class c and G in all. Each step takes one group from P distinct classes, chosen at
    random with probability growing with the groups a class has left, and
    forced for any class that would otherwise not fit in the remaining steps.
    Once fewer than P classes have groups left, the batch is filled with a
    fresh random group of other classes.

    An epoch's schedule is computed when its first batch is asked for (about
    1.5 s for SOP's 59,551 images on one build-machine core), and the next
    epoch's in a background thread meanwhile, so epoch boundaries do not stall.

    Classes with fewer than K images follow ``small_classes``: ``"repeat"``
    (default: the group is filled by drawing the class's images again, so an
    image can appear twice in its group) or ``"drop"`` (never sampled).

    Args:
        labels: ``(n,)`` int class id per index row.
        classes_per_batch: P.
        images_per_class: K.
        seed: int; the batches are a pure function of ``(seed, step)``.
        small_classes: ``"repeat"`` or ``"drop"``.
        eligible: optional rows (int positions or bool mask) to sample from;
            the others (e.g. corrupt images) are never drawn. Row numbers
            stay those of ``labels``.
    """

    def __init__(self, labels, classes_per_batch=64, images_per_class=2, seed=0, small_classes="repeat", eligible=None):
        labels = _labels_vector(labels)
        self.classes_per_batch = _check_positive_int("classes_per_batch", classes_per_batch)
        self.images_per_class = _check_positive_int("images_per_class", images_per_class)
        if small_classes not in SMALL_CLASS_RULES:
            raise ValueError(f"small_classes must be one of {SMALL_CLASS_RULES}, got {small_classes!r}.")
        self.seed = int(seed)
        self.small_classes = small_classes
        rows = _eligible_rows(labels, eligible)
        classes, inverse = np.unique(labels[rows], return_inverse=True)
        members = [rows[inverse == c] for c in range(len(classes))]
        if small_classes == "drop":
            keep = [i for i, m in enumerate(members) if len(m) >= self.images_per_class]
            classes, members = classes[keep], [members[i] for i in keep]
        if len(classes) < self.classes_per_batch:
            raise ValueError(
                f"classes_per_batch={self.classes_per_batch} but only {len(classes)} classes can be sampled "
                f"(small_classes={small_classes!r}, images_per_class={self.images_per_class})."
            )
        self.classes = classes
        self.members = members
        self.groups_per_class = np.array([math.ceil(len(m) / self.images_per_class) for m in members])
        self.steps_per_epoch = int(
            max(math.ceil(self.groups_per_class.sum() / self.classes_per_batch), self.groups_per_class.max())
        )
        self._lock = threading.Lock()
        self._schedules = {}  # epoch -> Future of epoch_schedule(epoch)
        self._executor = None

    @property
    def batch_size(self):
        return self.classes_per_batch * self.images_per_class

    def _group(self, rng, member_rows, order, start):
        """K rows of one class: ``order[start:start+K]`` topped up from the rest of the class."""
        k = self.images_per_class
        chosen = order[start : start + k]
        short = k - len(chosen)
        if short:
            others = order[:start]  # ``order`` is a permutation: these are the class's other images
            if len(others) >= short:
                extra = rng.choice(others, size=short, replace=False)
            else:
                extra = rng.choice(member_rows, size=short, replace=True)
            chosen = np.concatenate([chosen, extra])
        return chosen

    def epoch_schedule(self, epoch):
        """``(steps_per_epoch, P·K)`` int64 rows of every batch of ``epoch``."""
        rng = _rng(self.seed, 1, epoch)
        p, k = self.classes_per_batch, self.images_per_class
        orders = [rng.permutation(m) for m in self.members]
        next_group = np.zeros(len(self.members), dtype=np.int64)
        remaining = self.groups_per_class.copy()
        batches = np.empty((self.steps_per_epoch, p * k), dtype=np.int64)
        for step in range(self.steps_per_epoch):
            steps_left = self.steps_per_epoch - step
            forced = np.flatnonzero(remaining >= steps_left)
            candidates = np.flatnonzero((remaining > 0) & (remaining < steps_left))
            free = p - len(forced)
            if len(candidates) > free:
                # Gumbel top-k: sampling without replacement, weights = groups left.
                keys = np.log(remaining[candidates]) + rng.gumbel(size=len(candidates))
                candidates = candidates[np.argpartition(-keys, free - 1)[:free]] if free else candidates[:0]
            picked = np.concatenate([forced, candidates])
            if len(picked) < p:
                spare = np.setdiff1d(np.arange(len(self.members)), picked)
                fill = rng.choice(spare, size=p - len(picked), replace=False)
            else:
                fill = np.empty(0, dtype=np.int64)
            picked = rng.permutation(picked)
            rows = []
            for c in picked:
                rows.append(self._group(rng, self.members[c], orders[c], next_group[c] * k))
                next_group[c] += 1
                remaining[c] -= 1
            for c in fill:
                order = rng.permutation(self.members[c])
                rows.append(self._group(rng, self.members[c], order, 0))
            batches[step] = np.concatenate(rows)
        return batches

    def batch_rows(self, step):
        """Index rows of batch ``step`` (global step count since training began)."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        epoch, position = divmod(step, self.steps_per_epoch)
        return self._schedule(epoch)[position].copy()

    def _schedule(self, epoch):
        """Epoch ``epoch``'s schedule; the next epoch's is computed in the background meanwhile."""
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            for e in (epoch, epoch + 1):
                if e not in self._schedules:
                    self._schedules[e] = self._executor.submit(self.epoch_schedule, e)
            for e in [e for e in self._schedules if e < epoch or e > epoch + 1]:
                self._schedules.pop(e).cancel()
            future = self._schedules[epoch]
        return future.result()


class AsymmetricSampler:
    """DAMLRRM's asymmetric batches (Xu et al. 2019, Sec. 3.2, eq. 1–2).

    Two fixed training pools of unequal length are drawn once from ``seed``:

    * the neat pool X: ``neat_pool_batches`` neat batches ``B^x`` of m classes ×
      k images (class-grouped, as :class:`ClassBalancedSampler`);
    * the shuffled pool S: ``shuffled_pool_batches`` batches ``B^s`` of
      ``shuffled_size`` (= b/2, default m·k) images in random order, cut from
      consecutive random permutations of the training rows.

    Batch ``t`` is ``[B^x_(t mod Lx); B^s_(t mod Ls)]`` (neat half first, then the
    shuffled half), with ``Lx ≠ Ls`` (``N^x ≠ N^s``, eq. 2), so the same shuffled
    batch meets different neat batches at different iterations; each (neat,
    shuffled) pairing recurs only every ``lcm(Lx, Ls)`` iterations. The sampling
    size (DAMLRRM Table 6, "# Sampling Size") is ``N^x + N^s`` image draws.

    Defaults: ``neat_pool_batches`` = one P×K epoch of the training rows (each
    image at least once), ``shuffled_pool_batches = neat_pool_batches + 1``
    (coprime lengths).
    """

    def __init__(
        self,
        labels,
        classes_per_batch=30,
        images_per_class=2,
        shuffled_size=None,
        neat_pool_batches=None,
        shuffled_pool_batches=None,
        seed=0,
        small_classes="repeat",
        eligible=None,
    ):
        labels = _labels_vector(labels)
        neat = ClassBalancedSampler(
            labels, classes_per_batch, images_per_class, seed=seed, small_classes=small_classes, eligible=eligible
        )
        self.classes_per_batch = neat.classes_per_batch
        self.images_per_class = neat.images_per_class
        self.neat_size = neat.batch_size
        self.shuffled_size = _check_positive_int(
            "shuffled_size", self.neat_size if shuffled_size is None else shuffled_size
        )
        self.neat_pool_batches = _check_positive_int(
            "neat_pool_batches", neat.steps_per_epoch if neat_pool_batches is None else neat_pool_batches
        )
        self.shuffled_pool_batches = _check_positive_int(
            "shuffled_pool_batches",
            self.neat_pool_batches + 1 if shuffled_pool_batches is None else shuffled_pool_batches,
        )
        if self.neat_pool_batches == self.shuffled_pool_batches and self.neat_size == self.shuffled_size:
            raise ValueError(
                "the neat and shuffled pools must have different lengths (DAMLRRM eq. 2, N^x != N^s); got "
                f"neat_pool_batches == shuffled_pool_batches == {self.neat_pool_batches}."
            )
        self.seed = int(seed)
        epochs = math.ceil(self.neat_pool_batches / neat.steps_per_epoch)
        schedule = np.concatenate([neat.epoch_schedule(e) for e in range(epochs)])
        self.neat_pool = schedule[: self.neat_pool_batches]
        rows = _eligible_rows(labels, eligible)
        total = self.shuffled_pool_batches * self.shuffled_size
        rng = _rng(self.seed, 2)
        perms = [rng.permutation(rows) for _ in range(math.ceil(total / len(rows)))]
        self.shuffled_pool = np.concatenate(perms)[:total].reshape(self.shuffled_pool_batches, self.shuffled_size)

    @property
    def batch_size(self):
        return self.neat_size + self.shuffled_size

    @property
    def sampling_size(self):
        """Image draws in the two pools, ``N^x + N^s`` (DAMLRRM Table 6)."""
        return int(self.neat_pool.size + self.shuffled_pool.size)

    @property
    def distinct_images(self):
        """Distinct index rows that appear in either pool."""
        return int(np.unique(np.concatenate([self.neat_pool.ravel(), self.shuffled_pool.ravel()])).size)

    @property
    def period(self):
        """Iterations after which a (neat, shuffled) pairing recurs: ``lcm(Lx, Ls)``."""
        return math.lcm(self.neat_pool_batches, self.shuffled_pool_batches)

    def batch_rows(self, step):
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        return np.concatenate(
            [self.neat_pool[step % self.neat_pool_batches], self.shuffled_pool[step % self.shuffled_pool_batches]]
        )


def images_seen(batch_size, steps):
    """Images processed in ``steps`` iterations of ``batch_size`` (not the sampling size)."""
    return int(batch_size) * int(steps)


class TripletSampler:
    """Batches of externally mined ``(anchor, positive, negative)`` row triplets.

    Smart Mining (Harwood et al. 2017, Sec. 3) re-mines the triplets at the
    start of every epoch; call :meth:`set_triplets` with the ``(n, 3)`` int array
    of index rows for that epoch. Epoch ``e`` covers steps ``[e·S, (e+1)·S)``
    with ``S = steps_per_epoch``; it walks its triplets in an order shuffled by
    ``(seed, e)``, cycling if there are fewer than ``S·t`` of them.

    Batch layout (``t = triplets_per_batch``): ``[anchors (t); positives (t);
    negatives (t)]``, i.e. rows ``i``, ``t + i`` and ``2t + i`` form triplet ``i``.

    Set an epoch's triplets before asking for its batches, and give the batch
    stream only that epoch's steps (mine, then build the epoch's finite
    stream, then train it: ``experiments/trainer.py``). Asking for an epoch
    without triplets fails at once with a clear error, unless
    ``reuse_previous=True``, where the latest earlier epoch's triplets are used
    (mining every few epochs).
    """

    def __init__(self, num_rows, triplets_per_batch, steps_per_epoch, seed=0, reuse_previous=False):
        self.num_rows = _check_positive_int("num_rows", num_rows)
        self.triplets_per_batch = _check_positive_int("triplets_per_batch", triplets_per_batch)
        self.steps_per_epoch = _check_positive_int("steps_per_epoch", steps_per_epoch)
        self.seed = int(seed)
        self.reuse_previous = bool(reuse_previous)
        self._triplets = {}
        self._orders = {}

    @property
    def batch_size(self):
        return 3 * self.triplets_per_batch

    def set_triplets(self, triplets, epoch):
        """Use the ``(n, 3)`` int rows ``triplets`` for epoch ``epoch`` (0-based)."""
        triplets = np.asarray(triplets)
        if triplets.ndim != 2 or triplets.shape[1] != 3 or len(triplets) == 0:
            raise ValueError(f"triplets must be a non-empty (n, 3) array of index rows, got shape {triplets.shape}.")
        if not np.issubdtype(triplets.dtype, np.integer):
            raise ValueError(f"triplets must hold integer index rows, got dtype {triplets.dtype}.")
        if triplets.min() < 0 or triplets.max() >= self.num_rows:
            raise ValueError(
                f"triplet rows must lie in [0, {self.num_rows}), got values in [{triplets.min()}, {triplets.max()}]."
            )
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}.")
        self._triplets = {e: t for e, t in self._triplets.items() if e >= epoch - 2}
        self._triplets[epoch] = triplets.astype(np.int64)
        self._orders = {k: v for k, v in self._orders.items() if k[1] in self._triplets and k[1] != epoch}

    def triplets(self, epoch):
        """The epoch whose triplets epoch ``epoch`` uses (itself, or with ``reuse_previous`` an earlier one)."""
        if epoch in self._triplets:
            return epoch
        earlier = [e for e in self._triplets if e < epoch] if self.reuse_previous else []
        if earlier:
            return max(earlier)
        raise RuntimeError(
            f"TripletSampler: no triplets were set for epoch {epoch}; call set_triplets(triplets, epoch={epoch}) "
            "before building that epoch's batches, or pass reuse_previous=True."
        )

    def batch_rows(self, step):
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}.")
        epoch, position = divmod(step, self.steps_per_epoch)
        source = self.triplets(epoch)
        key = (epoch, source)
        if key not in self._orders:
            self._orders[key] = _rng(self.seed, 3, epoch).permutation(len(self._triplets[source]))
        order = self._orders[key]
        t = self.triplets_per_batch
        take = order[np.arange(position * t, (position + 1) * t) % len(order)]
        return self._triplets[source][take].T.reshape(-1)
