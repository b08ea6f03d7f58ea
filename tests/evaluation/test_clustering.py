"""NMI and pair-counting F1 from the contingency table vs scikit-learn and brute-force pairs."""

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from symm_keras.evaluation import contingency, normalized_mutual_info, pair_counting_f1
from tests.evaluation.oracles import nmi_oracle, pair_count_f1


def test_hand_computed_f1():
    # classes  a a a b b ; clusters 0 0 1 1 1
    # same-cluster pairs: C(2,2) + C(3,2) = 4, same-class pairs: C(3,2) + C(2,2) = 4,
    # both: (0,1) and (3,4) = 2 -> P = R = 1/2, F1 = 1/2.
    labels, clusters = ["a", "a", "a", "b", "b"], [0, 0, 1, 1, 1]
    assert pair_counting_f1(labels, clusters) == pytest.approx(0.5)
    table = contingency(labels, clusters)
    assert sorted(table.counts.tolist()) == [1, 2, 2]
    assert table.class_sizes.tolist() == [3, 2] and table.cluster_sizes.tolist() == [2, 3]


def test_hand_computed_nmi():
    # Perfect agreement up to renaming: NMI = 1; independent halves: NMI = 0.
    assert normalized_mutual_info([0, 0, 1, 1], [5, 5, 3, 3]) == pytest.approx(1.0)
    assert normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_against_sklearn_and_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    labels = rng.integers(0, int(rng.integers(1, 12)), size=n)
    clusters = np.where(rng.random(n) < 0.6, labels * 3 % 7, rng.integers(0, 9, size=n))
    assert normalized_mutual_info(labels, clusters) == pytest.approx(
        normalized_mutual_info_score(labels, clusters), abs=1e-12
    )
    assert normalized_mutual_info(labels, clusters) == pytest.approx(nmi_oracle(labels, clusters), abs=1e-12)
    assert pair_counting_f1(labels, clusters) == pytest.approx(pair_count_f1(labels, clusters), abs=1e-12)


def test_large_label_spaces_stay_sparse(rng):
    # 200k items in 40k classes x 40k clusters: a dense table would need 1.6e9 cells.
    labels = rng.integers(0, 40_000, size=200_000)
    clusters = (labels + (rng.random(200_000) < 0.1)) % 40_000
    assert 0.9 < normalized_mutual_info(labels, clusters) <= 1.0 + 1e-12
    assert 0.0 < pair_counting_f1(labels, clusters) < 1.0


def test_degenerate_cases():
    # One class and one cluster: sklearn's convention, NMI = 1; all pairs agree, F1 = 1.
    assert normalized_mutual_info([3, 3, 3], [0, 0, 0]) == 1.0
    assert pair_counting_f1([3, 3, 3], [0, 0, 0]) == 1.0
    # Every item its own cluster: no predicted pair, F1 = 0 (not NaN).
    assert pair_counting_f1([0, 0, 1, 1], [0, 1, 2, 3]) == 0.0
    assert normalized_mutual_info_score([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(
        normalized_mutual_info([0, 0, 1, 1], [0, 1, 2, 3])
    )


@pytest.mark.parametrize(
    "labels, clusters, message",
    [
        ([0, 1, 1], [0, 1], "clusters has 2 entries but labels has 3"),
        ([], [], "labels is empty"),
        ([[0, 1], [1, 0]], [0, 1], "labels must be a 1-D vector"),
    ],
)
def test_bad_input(labels, clusters, message):
    with pytest.raises(ValueError, match=message):
        pair_counting_f1(labels, clusters)
    with pytest.raises(ValueError, match=message):
        normalized_mutual_info(labels, clusters)
