"""Prim's per-class minimum spanning trees vs the paper's example and scipy."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy.sparse.csgraph import minimum_spanning_tree

from symm_keras.mining import prim_mst
from symm_keras.mining.prim_mst import prim_positive_pairs, tree_pair_mask


def prim_minimum_spanning_forest(distances, labels=None, max_tree_size=None):
    """The function under test; jit-compiled on JAX, whose op-by-op eager mode is slow."""
    if keras.backend.backend() != "jax":
        return prim_mst.prim_minimum_spanning_forest(distances, labels, max_tree_size)
    import jax

    if labels is None:
        return jax.jit(lambda d: prim_mst.prim_minimum_spanning_forest(d, None, max_tree_size))(distances)
    return jax.jit(lambda d, l: prim_mst.prim_minimum_spanning_forest(d, l, max_tree_size))(distances, labels)


def _edges(parent):
    """Tree edges as sorted 0-based (low, high) tuples."""
    parent = np.asarray(ops.convert_to_numpy(parent))
    return sorted((int(min(p, j)), int(max(p, j))) for j, p in enumerate(parent) if p >= 0)


def _weight(distances, parent):
    parent = np.asarray(ops.convert_to_numpy(parent))
    return float(sum(distances[p, j] for j, p in enumerate(parent) if p >= 0))


def _scipy_forest_weight(distances, labels):
    total = 0.0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        block = distances[np.ix_(idx, idx)]
        total += float(minimum_spanning_tree(block).sum())
    return total


def _euclidean(points):
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def _figure3_graph():
    """Complete 6-vertex graph with the edge weights of the paper's Figure 3(a).

    The figure's weights are only partly legible in the extracted text; the
    weights below use its values (1, 1.5, 1.5, 3, 3.5, 4, 4, 5, 5, 6) and every
    other edge is absent (weight 100). Vertices are 1-based in the paper.
    """
    w = np.full((6, 6), 100.0)
    for a, b, weight in [
        (1, 2, 1.0), (2, 4, 1.5), (4, 5, 1.5), (2, 3, 3.0), (4, 6, 3.5),
        (1, 4, 4.0), (3, 4, 4.0), (1, 3, 5.0), (3, 5, 5.0), (5, 6, 6.0),
    ]:
        w[a - 1, b - 1] = w[b - 1, a - 1] = weight
    np.fill_diagonal(w, 0.0)
    return w


def test_figure3_example_gives_the_papers_positive_pairs():
    parent = prim_minimum_spanning_forest(_figure3_graph())
    one_based = [(a + 1, b + 1) for a, b in _edges(parent)]
    assert one_based == [(1, 2), (2, 3), (2, 4), (4, 5), (4, 6)]  # eq. 3
    # Grown from vertex 1: 2 joins first, then 4, as in the paper's walk-through.
    assert list(ops.convert_to_numpy(parent)) == [-1, 0, 1, 1, 3, 3]


def test_figure3_positive_pair_mask_is_symmetric_tree():
    mask = np.asarray(ops.convert_to_numpy(prim_positive_pairs(_figure3_graph())))
    assert mask.dtype == bool and (mask == mask.T).all() and not mask.diagonal().any()
    assert mask.sum() == 2 * 5
    assert mask[0, 1] and mask[1, 3] and not mask[0, 3]


def test_path_and_star_graphs():
    points = np.arange(5, dtype="float64")[:, None] * np.array([[1.0, 0.0]])
    assert _edges(prim_minimum_spanning_forest(_euclidean(points))) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    star = np.concatenate([np.zeros((1, 2)), np.eye(2), -np.eye(2)])  # centre + 4 tips
    assert _edges(prim_minimum_spanning_forest(_euclidean(star))) == [(0, 1), (0, 2), (0, 3), (0, 4)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", range(3))
def test_random_single_graph_matches_scipy_weight(seed, dtype):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 16))
    upper = np.triu(rng.uniform(0.1, 10.0, size=(n, n)), 1)
    weights = upper + upper.T
    parent = prim_minimum_spanning_forest(weights.astype(dtype))
    assert len(_edges(parent)) == n - 1
    assert _weight(weights, parent) == pytest.approx(_scipy_forest_weight(weights, np.zeros(n)), rel=1e-6)


@pytest.mark.parametrize("seed", range(2))
def test_all_classes_at_once_match_scipy_per_class(seed):
    rng = np.random.default_rng(100 + seed)
    m, k = 12, 5
    labels = rng.permutation(np.repeat(rng.choice(1000, m, replace=False), k))
    points = rng.normal(size=(m * k, 8))
    distances = _euclidean(points)
    parent = prim_minimum_spanning_forest(distances, labels, max_tree_size=k)
    edges = _edges(parent)
    assert len(edges) == m * (k - 1)
    assert all(labels[a] == labels[b] for a, b in edges)  # never across classes
    assert _weight(distances, parent) == pytest.approx(_scipy_forest_weight(distances, labels), rel=1e-9)
    # Same forest without the iteration bound.
    assert _edges(prim_minimum_spanning_forest(distances, labels)) == edges


def test_uneven_classes_and_singletons():
    rng = np.random.default_rng(7)
    labels = np.array([3, 3, 3, 3, 9, 5, 5, 1, 1, 1])
    distances = _euclidean(rng.normal(size=(10, 4)))
    parent = np.asarray(ops.convert_to_numpy(prim_minimum_spanning_forest(distances, labels)))
    roots = np.flatnonzero(parent < 0)
    assert list(roots) == [0, 4, 5, 7]  # first occurrence of each class
    assert _weight(distances, parent) == pytest.approx(_scipy_forest_weight(distances, labels), rel=1e-9)


def test_ties_are_deterministic_and_minimal():
    n = 6
    equal = np.ones((n, n)) - np.eye(n)  # every spanning tree is minimal
    assert _edges(prim_minimum_spanning_forest(equal)) == [(0, j) for j in range(1, n)]
    # Integer weights with many ties: still minimal, and repeatable.
    rng = np.random.default_rng(3)
    upper = np.triu(rng.integers(1, 3, size=(12, 12)).astype("float64"), 1)
    weights = upper + upper.T
    first = _edges(prim_minimum_spanning_forest(weights))
    assert _edges(prim_minimum_spanning_forest(weights)) == first
    assert _weight(weights, prim_minimum_spanning_forest(weights)) == _scipy_forest_weight(weights, np.zeros(12))
    # Duplicate points (zero-length edges) join without NaN or a cycle.
    points = np.repeat(rng.normal(size=(3, 2)), 2, axis=0)
    parent = prim_minimum_spanning_forest(_euclidean(points))
    assert len(_edges(parent)) == 5


def test_compiled_loop_path_for_large_graphs():
    rng = np.random.default_rng(11)
    n = 40  # > 32 iterations: compiled loop instead of unrolled
    distances = _euclidean(rng.normal(size=(n, 3)))
    parent = prim_minimum_spanning_forest(distances)
    assert _weight(distances, parent) == pytest.approx(_scipy_forest_weight(distances, np.zeros(n)), rel=1e-9)
    assert ops.convert_to_numpy(parent).dtype == np.int32


def test_tree_pair_mask_from_parent():
    mask = np.asarray(ops.convert_to_numpy(tree_pair_mask(np.array([-1, 0, 0, 2], dtype="int32"))))
    expected = np.zeros((4, 4), bool)
    for a, b in [(0, 1), (0, 2), (2, 3)]:
        expected[a, b] = expected[b, a] = True
    np.testing.assert_array_equal(mask, expected)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="square"):
        prim_mst.prim_minimum_spanning_forest(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="labels has 2 entries"):
        prim_mst.prim_minimum_spanning_forest(np.zeros((3, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="max_tree_size"):
        prim_mst.prim_minimum_spanning_forest(np.zeros((3, 3)), max_tree_size=0)
    with pytest.raises(ValueError, match="parent must be a vector"):
        tree_pair_mask(np.zeros((2, 2), dtype="int32"))


def test_a_class_larger_than_max_tree_size_still_gets_its_whole_tree():
    # max_tree_size is the expected class size; a larger class (here 7 > 3) is grown on,
    # eagerly and compiled, so a wrong layout never leaves vertices without a tree edge.
    rng = np.random.default_rng(11)
    labels = np.array([4] * 7 + [2, 2, 2, 8, 8])
    distances = _euclidean(rng.normal(size=(12, 5)))
    parent = np.asarray(ops.convert_to_numpy(prim_minimum_spanning_forest(distances, labels, max_tree_size=3)))
    assert len(_edges(parent)) == 12 - 3
    assert _edges(parent) == _edges(prim_minimum_spanning_forest(distances, labels))
    assert _weight(distances, parent) == pytest.approx(_scipy_forest_weight(distances, labels), rel=1e-9)
    if keras.backend.backend() == "tensorflow":  # JAX is compiled above; torch has no XLA
        import tensorflow as tf

        compiled = tf.function(lambda d, l: prim_mst.prim_minimum_spanning_forest(d, l, 3), jit_compile=True)
        assert _edges(compiled(tf.constant(distances), tf.constant(labels))) == _edges(parent)
