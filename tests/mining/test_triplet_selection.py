"""Algorithm 1 (Smart Mining, Sec. 3.2.2) on hand-made neighbour lists and vs a literal loop."""

import numpy as np
import pytest

from symm_keras.mining.triplet_selection import _ClassIndex, epoch_triplets, random_triplets, smart_triplets

#            0  1  2  3  4  5  6
LABELS = np.array([0, 0, 1, 0, 2, 1, 0])  # class 0 = {0, 1, 3, 6}, class 1 = {2, 5}, class 2 = {4}


def lists(rows):
    idx = np.full((7, 6), -1, np.int64)
    dist = np.full((7, 6), np.inf)
    for i, (nbrs, ds) in rows.items():
        idx[i, : len(nbrs)] = nbrs
        dist[i, : len(ds)] = ds
    return idx, dist


HAND = lists({
    0: ([2, 1, 4, 5, 3, 6], [1.0, 2.0, 3.0, 5.0, 6.0, 8.0]),
    1: ([0, 4, 5], [1.0, 2.0, 3.0]),
    2: ([0, 1, 3], [1.0, 2.0, 3.0]),
})


def test_hand_made_lists_give_exact_triplets():
    idx, dist = HAND
    out = smart_triplets(idx, dist, LABELS, kappa=1.2, triplets_per_anchor=3, anchors=[0], seed=0)
    # bound = 1.2·2 = 2.4: 2 precedes the first positive (1); valid negatives 4, 5;
    # positives 3 and 6 are valid for both; 3 is the first.
    np.testing.assert_array_equal(out.triplets[:2], [[0, 3, 4], [0, 3, 5]])
    assert out.mined.tolist() == [True, True, False]
    assert out.random_positive.tolist() == [False, False, False]
    a, p, n = out.triplets[2]  # line 19: random triplet with the same anchor
    assert a == 0 and LABELS[p] == 0 and p != 0 and LABELS[n] != 0
    assert out.valid_negatives[0] == 2


def test_kappa_moves_the_exclusion_boundary():
    idx, dist = HAND
    out = smart_triplets(idx, dist, LABELS, kappa=2.0, triplets_per_anchor=2, anchors=[0], seed=0)
    # bound = 4: negative 4 (d = 3) is inside the boundary, 5 (d = 5) is valid.
    np.testing.assert_array_equal(out.triplets[0], [0, 3, 5])
    assert out.mined.tolist() == [True, False]
    # Entries exactly on the boundary are valid (line 11 uses a strict <).
    out = smart_triplets(idx, dist, LABELS, kappa=1.5, anchors=[0], seed=0)
    np.testing.assert_array_equal(out.triplets[0], [0, 3, 4])


def test_positive_valid_only_for_closer_negatives():
    idx, dist = lists({0: ([1, 4, 3, 5, 6], [1.0, 2.0, 3.0, 4.0, 5.0])})
    out = smart_triplets(idx, dist, LABELS, kappa=1.0, triplets_per_anchor=2, anchors=[0], seed=0)
    # 3 is valid for negative 4 only; negative 5 needs the later positive 6.
    np.testing.assert_array_equal(out.triplets, [[0, 3, 4], [0, 6, 5]])


def test_random_positive_from_outside_the_list_when_none_is_valid():
    idx, dist = HAND
    for seed in range(20):
        out = smart_triplets(idx, dist, LABELS, kappa=1.0, triplets_per_anchor=2, anchors=[1], seed=seed)
        # Anchor 1: bound = 1, negatives 4 and 5 valid, no later positive.
        assert out.mined.tolist() == [True, True] and out.random_positive.tolist() == [True, True]
        np.testing.assert_array_equal(out.triplets[:, 2], [4, 5])
        assert set(out.triplets[:, 1]) <= {3, 6}  # class 0 minus S_1 = {0} minus the anchor


def test_no_positive_in_list_gives_random_triplets_and_singletons_are_skipped():
    idx, dist = HAND
    out = smart_triplets(idx, dist, LABELS, kappa=1.0, anchors=[2, 4], seed=0)
    assert len(out.triplets) == 1  # class 2 has one sample: no triplet for anchor 4
    a, p, n = out.triplets[0]
    assert (a, p) == (2, 5) and LABELS[n] != 1 and not out.mined[0]


def test_exact_outside_draw_is_uniform_over_the_class_minus_the_list(rng):
    # Class 0 = {0, 1, 3, 6} (anchor 0 excluded) and class 1 = {2, 5}.
    classes = _ClassIndex(LABELS)
    anchors = np.array([0, 0, 2, 2])
    lists_ = np.array([[1, 4, -1], [1, 3, 6], [0, 1, 4], [5, 0, 1]])
    draws = np.stack([classes.random_positive_outside(anchors, lists_, rng) for _ in range(3000)])
    assert set(draws[:, 0]) == {3, 6}  # class 0 minus {0} minus the list {1}
    assert set(draws[:, 1]) == {1, 3, 6}  # the list holds the whole class: the class minus the anchor
    assert set(draws[:, 2]) == {5} and set(draws[:, 3]) == {5}
    assert abs(np.mean(draws[:, 0] == 3) - 0.5) < 0.05
    assert all(abs(np.mean(draws[:, 1] == c) - 1 / 3) < 0.05 for c in (1, 3, 6))


def literal_algorithm_1(idx, dist, labels, kappa, per_anchor):
    """Alg. 1 lines 1–27 as printed; random slots returned as None."""
    result = []
    for i in range(len(labels)):
        if np.sum(labels == labels[i]) < 2:
            continue
        neg, pos = [], []
        for j in range(idx.shape[1]):
            s = idx[i, j]
            if s < 0:
                continue
            if not pos:
                if labels[s] != labels[i]:
                    continue
                bound = kappa * dist[i, j]
                pos.append((s, []))
                continue
            if dist[i, j] < bound:
                continue
            if labels[s] != labels[i]:
                neg.append(s)
            if labels[s] == labels[i]:
                pos.append((s, list(neg)))
        for _ in range(per_anchor):
            if not neg:
                result.append(None)
                continue
            t = (i, "random", neg[0])
            for p, valid in pos:
                if neg[0] not in valid:
                    continue
                t = (i, p, neg[0])
                break
            result.append(t)
            neg.pop(0)
    return result


@pytest.mark.parametrize("kappa", [0.5, 1.0, 1.7, 4.0])
def test_smart_triplets_equal_the_literal_loop(rng, kappa):
    n, k = 300, 15
    labels = rng.integers(0, 40, n)
    x = rng.normal(size=(40, 4))[labels] + 0.8 * rng.normal(size=(n, 4))
    d = np.sum((x[:, None] - x[None]) ** 2, -1)
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1)[:, :k]
    dist = np.take_along_axis(d, idx, 1)
    out = smart_triplets(idx, dist, labels, kappa, triplets_per_anchor=3, seed=1)
    want = literal_algorithm_1(idx, dist, labels, kappa, 3)
    assert len(want) == len(out.triplets)
    for got, mined, rand_pos, w in zip(out.triplets, out.mined, out.random_positive, want):
        a, p, n_ = got
        assert labels[p] == labels[a] and p != a and labels[n_] != labels[a]
        if w is None:
            assert not mined
        else:
            assert mined and (a, n_) == (w[0], w[2])
            assert rand_pos == (w[1] == "random")
            if w[1] == "random":
                outside = set(np.flatnonzero(labels == labels[a])) - set(idx[a]) - {a}
                assert p in outside if outside else True  # whole class when S_i holds it all
            else:
                assert p == w[1]
    assert out.mined.any() and (~out.mined).any() or kappa == 4.0


def test_epoch_triplets_mined_share_and_random_epochs(rng):
    labels = rng.integers(0, 30, 600)
    x = rng.normal(size=(30, 3))[labels] + 0.5 * rng.normal(size=(600, 3))
    d = np.sum((x[:, None] - x[None]) ** 2, -1)
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, 1)[:, :40]
    dist = np.take_along_axis(d, idx, 1)
    epoch = epoch_triplets(idx, dist, labels, 1.0, num_batches=20, triplets_per_batch=10, mined_share=0.6, seed=0)
    assert epoch.triplets.shape == (200, 3)
    per_batch = epoch.from_algorithm.reshape(20, 10).sum(axis=1)
    assert np.all(per_batch == 6)
    t = epoch.triplets
    assert np.all(labels[t[:, 0]] == labels[t[:, 1]]) and np.all(t[:, 0] != t[:, 1])
    assert np.all(labels[t[:, 0]] != labels[t[:, 2]])
    assert 0 < epoch.mined_share <= 0.6
    random_only = epoch_triplets(idx, dist, labels, 1.0, 5, 10, mined_share=0.0, seed=0)
    assert not random_only.from_algorithm.any() and random_only.mined_share == 0.0
    again = epoch_triplets(idx, dist, labels, 1.0, num_batches=20, triplets_per_batch=10, mined_share=0.6, seed=0)
    np.testing.assert_array_equal(again.triplets, epoch.triplets)


def test_random_triplets_are_valid(rng):
    labels = np.array([0, 0, 1, 1, 1, 2])
    t = random_triplets(labels, 500, seed=0)
    assert np.all(labels[t[:, 0]] == labels[t[:, 1]]) and np.all(t[:, 0] != t[:, 1])
    assert np.all(labels[t[:, 2]] != labels[t[:, 0]]) and 5 not in t[:, 0]
    assert set(t[:, 2]) == set(range(6))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: smart_triplets(HAND[0], HAND[1], LABELS, kappa=0.0), "kappa"),
        (lambda: smart_triplets(HAND[0][:3], HAND[1][:3], LABELS, 1.0), "one row per labelled sample"),
        (lambda: smart_triplets(HAND[0], HAND[1][:, :2], LABELS, 1.0), "neighbour_distances"),
        (lambda: smart_triplets(HAND[0] + 10, HAND[1], LABELS, 1.0), r"\[0, 7\)"),
        (lambda: smart_triplets(HAND[0], HAND[1], np.zeros(7, int), 1.0), "2 classes"),
        (lambda: smart_triplets(HAND[0], HAND[1], np.arange(7), 1.0), "at least 2 samples"),
        (lambda: epoch_triplets(HAND[0], HAND[1], LABELS, 1.0, 2, 3, mined_share=1.5), "mined_share"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
