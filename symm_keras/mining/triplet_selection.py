"""Smart Mining triplet selection: Algorithm 1 of Harwood et al. (ICCV 2017, Sec. 3.2.2).

Input: each sample's neighbour list ``S_i`` (ascending squared distances, the
sample itself excluded), the class labels and the scale ``κ``. One pass over
``S_i`` (Alg. 1, lines 4–16):

* entries before the first positive (same class as ``i``) are skipped; the
  first positive ``x⁺ᴺᴺ`` sets the exclusion boundary
  ``bound = κ · d(x_i, x⁺ᴺᴺ)`` (eq. 6) and is stored with an empty valid range;
* later entries with ``d < bound`` are skipped;
* a later negative is appended to ``neg`` (a valid negative);
* a later positive is appended to ``pos`` with a copy of ``neg`` so far (the
  negatives it is valid for: those closer to the anchor than it).

Triplets of anchor ``i`` (lines 17–27): while ``neg`` is not empty, take
``neg[0]`` and the first positive whose valid range contains it (the softest
positive still harder than the negative), else a random positive from
``T \\ S_i`` (line 21); then remove ``neg[0]``. When ``neg`` is empty the
triplet is random (line 19).

Choices where the paper is open (documented in ``docs/smart_mining.md``):

* Line 11 is applied literally: an entry exactly on the boundary is valid.
* "Random triplet" (line 19) keeps the anchor ``x_i`` and draws a uniform
  positive of its class and a uniform negative (as in the paper's Fig. 5,
  "random triplets constructed with the same anchor").
* "Random positive ∉ pos" (line 21) is drawn uniformly from the anchor's class
  outside ``S_i`` (the text: "uniformly selected from T \\ N_i"); when every
  other member of the class is in ``S_i`` it is drawn from the whole class.
* Anchors whose class has a single sample cannot form a triplet and are skipped.
* Missing neighbour entries (index ``-1``) are ignored.

:func:`smart_triplets` scans the lists in one compiled pass (numba) and draws
the random fallbacks vectorised; it equals the literal loop (tests check both
against hand-made lists). :func:`epoch_triplets` mixes Alg. 1 triplets and
uniformly random ones with a given mined share per batch (paper: 50–100 %).
"""

import dataclasses

import numba
import numpy as np


class _ClassIndex:
    """Samples grouped by class for O(1) uniform draws."""

    def __init__(self, labels):
        labels = np.asarray(labels).reshape(-1)
        if labels.size == 0:
            raise ValueError("labels is empty.")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}.")
        self.labels = labels
        self.order = np.argsort(labels, kind="stable")
        classes, starts, sizes = np.unique(labels[self.order], return_index=True, return_counts=True)
        if len(classes) < 2:
            raise ValueError("triplets need at least 2 classes in labels.")
        if sizes.max() < 2:
            raise ValueError("triplets need a class with at least 2 samples; every class has 1.")
        self.start = np.empty(labels.size, np.int64)  # each sample's class block in `order`
        self.start[self.order] = np.repeat(starts, sizes)
        self.size = np.empty(labels.size, np.int64)
        self.size[self.order] = np.repeat(sizes, sizes)
        self.rank = np.empty(labels.size, np.int64)  # position of each sample inside its class block
        self.rank[self.order] = np.arange(labels.size) - self.start[self.order]
        self.n = labels.size

    def random_positive(self, anchors, rng):
        """Uniform same-class sample other than the anchor."""
        draw = rng.integers(0, self.size[anchors] - 1)
        draw = draw + (draw >= self.rank[anchors])
        return self.order[self.start[anchors] + draw]

    def random_negative(self, anchors, rng):
        """Uniform sample of another class."""
        draw = rng.integers(0, self.n - self.size[anchors])
        draw = draw + self.size[anchors] * (draw >= self.start[anchors])
        return self.order[draw]

    def random_positive_outside(self, anchors, lists, rng):
        """Uniform same-class sample outside ``lists[t]`` (and not the anchor), per row ``t``.

        Exact and vectorised over the members of each anchor's class; when the
        list holds the whole class, uniform over the class minus the anchor.
        """
        sizes = self.size[anchors]
        row = np.repeat(np.arange(anchors.size), sizes)
        offset = np.arange(row.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        member = self.order[self.start[anchors][row] + offset]
        others = member != anchors[row]
        eligible = others & ~(lists[row] == member[:, None]).any(axis=1)
        count = np.bincount(row, weights=eligible, minlength=anchors.size).astype(np.int64)
        eligible = np.where((count == 0)[row], others, eligible)
        count = np.bincount(row, weights=eligible, minlength=anchors.size).astype(np.int64)
        rank = np.cumsum(eligible) - np.repeat(np.cumsum(count) - count, sizes)  # 1-based among eligible
        pick = eligible & (rank == rng.integers(0, count)[row] + 1)
        return member[pick]

    def usable_anchors(self):
        return np.flatnonzero(self.size >= 2)


def _check_neighbours(neighbour_indices, neighbour_distances, n):
    idx = np.asarray(neighbour_indices)
    dist = np.asarray(neighbour_distances)
    if dist.dtype not in (np.float32, np.float64):
        dist = dist.astype(np.float64)
    if idx.ndim != 2 or idx.shape[0] != n:
        raise ValueError(
            f"neighbour_indices must be an ({n}, k) matrix (one row per labelled sample), "
            f"got shape {idx.shape}."
        )
    if dist.shape != idx.shape:
        raise ValueError(
            f"neighbour_distances has shape {dist.shape}, neighbour_indices has {idx.shape}."
        )
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"neighbour_indices must be integers, got dtype {idx.dtype}.")
    if idx.size and (idx.min() < -1 or idx.max() >= n):
        raise ValueError(f"neighbour_indices must lie in [0, {n}) (or -1 for a missing entry).")
    return idx.astype(np.int64, copy=False), dist


def _check_kappa(kappa):
    kappa = float(kappa)
    if not np.isfinite(kappa) or kappa <= 0:
        raise ValueError(f"kappa must be a positive number, got {kappa}.")
    return kappa


@numba.njit(cache=True, nogil=True)
def _scan_lists(idx, dist, labels, anchors, kappa, per_anchor):
    """Alg. 1 lines 4–27 for each anchor, one pass over its list.

    Returns ``negatives`` and ``positives`` ``(A, per_anchor)``: the anchor's
    ``j``-th valid negative and the first valid positive after it in the list
    (the first positive whose valid range holds that negative), ``-1`` where
    there is none; and ``(A,)`` the number of valid negatives.
    """
    negatives = np.full((anchors.size, per_anchor), -1, np.int64)
    positives = np.full((anchors.size, per_anchor), -1, np.int64)
    n_neg = np.zeros(anchors.size, np.int64)
    for r in range(anchors.size):
        a = anchors[r]
        bound = np.inf  # set by the first positive, x⁺ᴺᴺ (eq. 6)
        seen_positive = False
        paired = 0  # the first `paired` valid negatives already have their positive
        for j in range(idx.shape[1]):
            s = idx[a, j]
            if s < 0:
                continue
            if not seen_positive:
                if labels[s] == labels[a]:
                    seen_positive = True
                    bound = kappa * dist[a, j]
                continue
            if dist[a, j] < bound:
                continue
            if labels[s] != labels[a]:
                if n_neg[r] < per_anchor:
                    negatives[r, n_neg[r]] = s
                n_neg[r] += 1
            else:
                for t in range(paired, min(n_neg[r], per_anchor)):
                    positives[r, t] = s
                paired = min(n_neg[r], per_anchor)
    return negatives, positives, n_neg


@dataclasses.dataclass
class SmartTriplets:
    """Output of Algorithm 1 for a set of anchors.

    Attributes:
        triplets: ``(T, 3)`` int64 rows ``(anchor, positive, negative)``.
        mined: ``(T,)`` bool, True where Alg. 1 found a valid negative (False:
            random triplet of line 19).
        random_positive: ``(T,)`` bool, True where the negative was mined but
            no positive was valid for it (line 21's random positive).
        valid_negatives: ``(N,)`` number of valid negatives per sample.
    """

    triplets: np.ndarray
    mined: np.ndarray
    random_positive: np.ndarray
    valid_negatives: np.ndarray


def smart_triplets(neighbour_indices, neighbour_distances, labels, kappa, triplets_per_anchor=1,
                   anchors=None, seed=None):
    """Algorithm 1 (Smart Mining Sec. 3.2.2) for many anchors.

    Args:
        neighbour_indices: ``(N, k)`` neighbour lists, ascending by distance.
        neighbour_distances: ``(N, k)`` squared distances matching the indices.
        labels: ``(N,)`` integer class labels.
        kappa: exclusion scale κ (eq. 6), ``> 0``.
        triplets_per_anchor: triplets formed per anchor (Alg. 1 line 17); the
            ``j``-th uses the ``j``-th valid negative, or is random when there
            are fewer valid negatives.
        anchors: anchors to mine for (default: every sample whose class has
            another sample).
        seed: seed or ``numpy.random.Generator`` for the random fallbacks.

    Returns:
        :class:`SmartTriplets`, anchors in the given order, the triplets of
        one anchor consecutive.
    """
    classes = _ClassIndex(labels)
    idx, dist = _check_neighbours(neighbour_indices, neighbour_distances, classes.n)
    kappa = _check_kappa(kappa)
    per_anchor = int(triplets_per_anchor)
    if per_anchor < 1:
        raise ValueError(f"triplets_per_anchor must be >= 1, got {triplets_per_anchor}.")
    if anchors is not None:
        anchors = np.asarray(anchors, np.int64).reshape(-1)
        if anchors.size and (anchors.min() < 0 or anchors.max() >= classes.n):
            raise ValueError(f"anchors must lie in [0, {classes.n}).")
    return _smart_triplets(classes, idx, dist, kappa, per_anchor, anchors, np.random.default_rng(seed))


def _smart_triplets(classes, idx, dist, kappa, per_anchor, anchors, rng):
    anchors = classes.usable_anchors() if anchors is None else anchors[classes.size[anchors] >= 2]
    negatives, positives, n_neg = _scan_lists(idx, dist, classes.labels, anchors, kappa, per_anchor)
    anchor_ids = np.repeat(anchors, per_anchor)
    negative, positive = negatives.reshape(-1), positives.reshape(-1)
    mined = negative >= 0
    random_positive = mined & (positive < 0)

    # Line 21: random positive of the anchor's class outside S_i.
    need = np.flatnonzero(random_positive)
    lists = idx[anchor_ids[need]]
    for _ in range(16):
        if need.size == 0:
            break
        cand = classes.random_positive(anchor_ids[need], rng)
        inside = (lists == cand[:, None]).any(axis=1)
        positive[need[~inside]] = cand[~inside]
        need, lists = need[inside], lists[inside]
    if need.size:  # class (almost) all inside S_i: exact uniform draw from the rest
        positive[need] = classes.random_positive_outside(anchor_ids[need], lists, rng)

    # Line 19: random triplet with the same anchor.
    rand = np.flatnonzero(~mined)
    positive[rand] = classes.random_positive(anchor_ids[rand], rng)
    negative[rand] = classes.random_negative(anchor_ids[rand], rng)

    valid_negatives = np.zeros(classes.n, np.int64)
    valid_negatives[anchors] = n_neg
    return SmartTriplets(
        triplets=np.stack([anchor_ids, positive, negative], axis=1),
        mined=mined,
        random_positive=random_positive,
        valid_negatives=valid_negatives,
    )


def random_triplets(labels, count, seed=None):
    """``count`` uniformly random ``(anchor, positive, negative)`` rows.

    The anchor is uniform over samples whose class has another sample.
    """
    return _random_triplets(_ClassIndex(labels), int(count), np.random.default_rng(seed))


def _random_triplets(classes, count, rng):
    usable = classes.usable_anchors()
    anchors = usable[rng.integers(0, usable.size, count)]
    return np.stack([anchors, classes.random_positive(anchors, rng), classes.random_negative(anchors, rng)], axis=1)


@dataclasses.dataclass
class EpochTriplets:
    """An epoch's triplets, in batch order.

    Attributes:
        triplets: ``(num_batches · triplets_per_batch, 3)`` rows.
        from_algorithm: True for rows produced by Algorithm 1 (mined or its
            fallbacks), False for the uniformly random share.
        mined: True where Algorithm 1 found a valid negative.
    """

    triplets: np.ndarray
    from_algorithm: np.ndarray
    mined: np.ndarray

    @property
    def mined_share(self):
        """Share of all triplets that are truly mined (valid negative found)."""
        return float(self.mined.mean()) if self.mined.size else 0.0


def epoch_triplets(neighbour_indices, neighbour_distances, labels, kappa, num_batches,
                   triplets_per_batch, mined_share=1.0, seed=None):
    """Triplets for one epoch: per batch ``round(mined_share · t)`` from Alg. 1, the rest random.

    Alg. 1 triplets are taken over the anchors in a shuffled order; when an
    epoch needs more than one per anchor, anchors get further triplets (their
    next valid negatives, Alg. 1 line 17). ``mined_share = 0`` gives random
    triplets only (the paper's first two epochs).
    """
    mined_share = float(mined_share)
    if not 0.0 <= mined_share <= 1.0:
        raise ValueError(f"mined_share must be in [0, 1], got {mined_share}.")
    num_batches, per_batch = int(num_batches), int(triplets_per_batch)
    if num_batches < 1 or per_batch < 1:
        raise ValueError("num_batches and triplets_per_batch must be >= 1.")
    rng = np.random.default_rng(seed)
    classes = _ClassIndex(labels)
    per_batch_mined = int(round(mined_share * per_batch))
    total_mined = per_batch_mined * num_batches
    random_rows = _random_triplets(classes, (per_batch - per_batch_mined) * num_batches, rng)
    if total_mined:
        idx, dist = _check_neighbours(neighbour_indices, neighbour_distances, classes.n)
        kappa = _check_kappa(kappa)
        usable = classes.usable_anchors()
        per_anchor = -(-total_mined // usable.size)
        anchors = rng.permutation(usable)
        smart = _smart_triplets(classes, idx, dist, kappa, per_anchor, anchors, rng)
        # Slot-major order: every anchor's first triplet before any second one.
        order = np.arange(len(smart.triplets)).reshape(len(anchors), per_anchor).T.reshape(-1)
        order = order[:total_mined]
        smart_rows, smart_mined = smart.triplets[order], smart.mined[order]
    else:
        smart_rows, smart_mined = np.zeros((0, 3), np.int64), np.zeros(0, bool)
    triplets = np.empty((num_batches, per_batch, 3), np.int64)
    from_alg = np.zeros((num_batches, per_batch), bool)
    mined = np.zeros((num_batches, per_batch), bool)
    triplets[:, :per_batch_mined] = smart_rows.reshape(num_batches, per_batch_mined, 3)
    triplets[:, per_batch_mined:] = random_rows.reshape(num_batches, per_batch - per_batch_mined, 3)
    from_alg[:, :per_batch_mined] = True
    mined[:, :per_batch_mined] = smart_mined.reshape(num_batches, per_batch_mined)
    # Shuffle inside each batch so mined and random rows are interleaved.
    perm = np.argsort(rng.random((num_batches, per_batch)), axis=1)
    take = np.arange(num_batches)[:, None]
    return EpochTriplets(
        triplets=triplets[take, perm].reshape(-1, 3),
        from_algorithm=from_alg[take, perm].reshape(-1),
        mined=mined[take, perm].reshape(-1),
    )
