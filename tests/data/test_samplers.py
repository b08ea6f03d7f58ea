"""Sampler invariants: P×K layout, epoch coverage, DAMLRRM pools, triplet feed, determinism."""

import math
import time

import numpy as np
import pytest

from symm_keras import data


def _labels(rng, classes=12, low=1, high=9):
    sizes = rng.integers(low, high, size=classes)
    return np.repeat(np.arange(1, classes + 1) * 10, sizes)


def _check_pk_batch(rows, labels, p, k):
    batch_labels = labels[rows].reshape(p, k)
    assert (batch_labels == batch_labels[:, :1]).all(), "a K-group mixes classes"
    assert len(np.unique(batch_labels[:, 0])) == p, "classes repeat within a batch"


@pytest.mark.parametrize("p,k", [(4, 2), (5, 3), (12, 1)])
def test_pk_batches_have_p_distinct_classes_of_k_and_cover_the_epoch(rng, p, k):
    labels = _labels(rng)
    sampler = data.ClassBalancedSampler(labels, p, k, seed=3)
    groups = [math.ceil(np.sum(labels == c) / k) for c in np.unique(labels)]
    assert sampler.steps_per_epoch == max(math.ceil(sum(groups) / p), max(groups))
    for epoch in range(3):
        seen = np.zeros(len(labels), bool)
        for step in range(epoch * sampler.steps_per_epoch, (epoch + 1) * sampler.steps_per_epoch):
            rows = sampler.batch_rows(step)
            assert rows.shape == (p * k,)
            _check_pk_batch(rows, labels, p, k)
            for group in rows.reshape(p, k):
                if np.sum(labels == labels[group[0]]) >= k:
                    assert len(set(group)) == k, "a group repeats an image although the class has enough"
            seen[rows] = True
        assert seen.all(), f"epoch {epoch} missed rows {np.flatnonzero(~seen)}"


def test_pk_is_a_pure_function_of_seed_and_step(rng):
    labels = _labels(rng)
    a = data.ClassBalancedSampler(labels, 4, 2, seed=1)
    b = data.ClassBalancedSampler(labels, 4, 2, seed=1)
    later = [b.batch_rows(s) for s in (17, 3, 9)]  # random access, as when resuming
    np.testing.assert_array_equal(later[0], a.batch_rows(17))
    np.testing.assert_array_equal(later[1], a.batch_rows(3))
    np.testing.assert_array_equal(later[2], a.batch_rows(9))
    c = data.ClassBalancedSampler(labels, 4, 2, seed=2)
    assert any(not np.array_equal(a.batch_rows(s), c.batch_rows(s)) for s in range(5))
    s = a.steps_per_epoch
    assert not np.array_equal(a.epoch_schedule(0), a.epoch_schedule(1)), "epochs must be reshuffled"
    np.testing.assert_array_equal(a.batch_rows(s), a.epoch_schedule(1)[0])


def test_small_classes_repeat_or_drop():
    labels = np.array([1, 2, 2, 2, 3, 3, 4, 4, 4])
    repeat = data.ClassBalancedSampler(labels, 2, 3, seed=0, small_classes="repeat")
    seen = set()
    for step in range(repeat.steps_per_epoch):
        rows = repeat.batch_rows(step)
        _check_pk_batch(rows, labels, 2, 3)
        seen.update(rows.tolist())
    assert seen == set(range(9))
    drop = data.ClassBalancedSampler(labels, 2, 3, seed=0, small_classes="drop")
    for step in range(2 * drop.steps_per_epoch):
        assert set(labels[drop.batch_rows(step)]) <= {2, 4}


def test_eligible_rows_are_the_only_ones_sampled(rng):
    labels = _labels(rng, low=3)
    eligible = np.ones(len(labels), bool)
    eligible[[0, 5, 9]] = False
    sampler = data.ClassBalancedSampler(labels, 4, 2, seed=0, eligible=eligible)
    rows = np.concatenate([sampler.batch_rows(s) for s in range(sampler.steps_per_epoch)])
    assert not set(rows.tolist()) & {0, 5, 9}
    assert set(rows.tolist()) == set(np.flatnonzero(eligible).tolist())


def test_pk_errors_are_clear(rng):
    with pytest.raises(ValueError, match="classes_per_batch=20 but only 12 classes"):
        data.ClassBalancedSampler(_labels(rng), 20, 2)
    with pytest.raises(ValueError, match="images_per_class must be a positive int"):
        data.ClassBalancedSampler(_labels(rng), 2, 0)
    with pytest.raises(ValueError, match="integer class ids"):
        data.ClassBalancedSampler(np.array([0.5, 1.5]), 1, 1)
    with pytest.raises(ValueError, match="small_classes must be one of"):
        data.ClassBalancedSampler(_labels(rng), 2, 2, small_classes="pad")
    with pytest.raises(ValueError, match="step must be >= 0"):
        data.ClassBalancedSampler(_labels(rng), 2, 2).batch_rows(-1)


def test_asymmetric_batches_layout_and_interlaced_pools(rng):
    labels = _labels(rng, classes=10, low=3)
    m, k = 3, 2
    sampler = data.AsymmetricSampler(labels, m, k, seed=5)
    assert sampler.neat_size == sampler.shuffled_size == m * k
    lx, ls = sampler.neat_pool_batches, sampler.shuffled_pool_batches
    assert lx != ls and math.gcd(lx, ls) == 1 and sampler.period == lx * ls
    assert sampler.sampling_size == (lx + ls) * m * k
    seen_neat = np.zeros(len(labels), bool)
    partners = {}
    for step in range(sampler.period):
        rows = sampler.batch_rows(step)
        assert rows.shape == (sampler.batch_size,)
        _check_pk_batch(rows[: m * k], labels, m, k)
        seen_neat[rows[: m * k]] = True
        partners.setdefault(step % ls, set()).add(step % lx)
        np.testing.assert_array_equal(rows, sampler.batch_rows(step + sampler.period))
    assert seen_neat.all(), "the default neat pool is one P×K epoch and covers every image"
    # eq. 2: the same shuffled batch meets every neat batch over one period
    assert all(len(v) == lx for v in partners.values())
    # shuffled half: random permutations of the rows, no repeats within one permutation
    flat = sampler.shuffled_pool.ravel()
    np.testing.assert_array_equal(np.sort(flat[: len(labels)]), np.arange(len(labels)))


def test_asymmetric_custom_pool_sizes_and_errors(rng):
    labels = _labels(rng, classes=10, low=3)
    sampler = data.AsymmetricSampler(labels, 3, 2, shuffled_size=4, neat_pool_batches=2, shuffled_pool_batches=5)
    assert sampler.neat_pool.shape == (2, 6) and sampler.shuffled_pool.shape == (5, 4)
    assert sampler.sampling_size == 2 * 6 + 5 * 4
    assert sampler.distinct_images <= len(labels)
    with pytest.raises(ValueError, match="N\\^x != N\\^s"):
        data.AsymmetricSampler(labels, 3, 2, neat_pool_batches=4, shuffled_pool_batches=4)
    np.testing.assert_array_equal(
        data.AsymmetricSampler(labels, 3, 2, seed=9).batch_rows(7), data.AsymmetricSampler(labels, 3, 2, seed=9).batch_rows(7)
    )
    assert data.images_seen(120, 40000) == 4_800_000


def test_triplet_sampler_layout_epochs_and_cycling():
    sampler = data.TripletSampler(num_rows=20, triplets_per_batch=2, steps_per_epoch=3, seed=0)
    first = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    sampler.set_triplets(first, epoch=0)
    batches = [sampler.batch_rows(s).reshape(3, 2) for s in range(3)]
    used = [tuple(b[:, i]) for b in batches for i in range(2)]
    assert set(used) == {tuple(t) for t in first.tolist()}, "rows a, p, n must come from one triplet"
    assert len(used) == 6  # 3 steps × 2 triplets cycle over 3 triplets twice
    with pytest.raises(RuntimeError, match="no triplets were set for epoch 1"):
        sampler.batch_rows(3)
    second = np.array([[10, 11, 12], [13, 14, 15]])
    sampler.set_triplets(second, epoch=1)
    assert set(sampler.batch_rows(3).tolist()) <= set(second.ravel().tolist())


def test_triplet_sampler_fails_at_once_for_a_missing_epoch_and_reuses_when_asked():
    sampler = data.TripletSampler(num_rows=10, triplets_per_batch=1, steps_per_epoch=1)
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="no triplets were set for epoch 0; call set_triplets"):
        sampler.batch_rows(0)
    assert time.perf_counter() - start < 1.0  # no waiting
    reuse = data.TripletSampler(num_rows=10, triplets_per_batch=1, steps_per_epoch=1, reuse_previous=True)
    reuse.set_triplets(np.array([[4, 5, 6]]), epoch=0)
    np.testing.assert_array_equal(reuse.batch_rows(5), [4, 5, 6])


def test_triplet_sampler_rejects_bad_triplets():
    sampler = data.TripletSampler(num_rows=10, triplets_per_batch=1, steps_per_epoch=1)
    with pytest.raises(ValueError, match="\\(n, 3\\)"):
        sampler.set_triplets(np.zeros((4, 2), int), epoch=0)
    with pytest.raises(ValueError, match="must lie in \\[0, 10\\)"):
        sampler.set_triplets(np.array([[0, 1, 10]]), epoch=0)
    with pytest.raises(ValueError, match="integer index rows"):
        sampler.set_triplets(np.array([[0.0, 1.0, 2.0]]), epoch=0)
