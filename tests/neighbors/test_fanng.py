"""FANNG (Harwood & Drummond 2016) as used by Smart Mining: recall, occlusion rule, determinism."""

import numpy as np
import pytest

from symm_keras.neighbors import exact_knn
from symm_keras.neighbors.fanng import build_fanng, calibrate_search_budget, fanng_neighbours, fanng_search


def clustered(n, n_classes, dim, seed=0, latent_dim=12, spread=0.4, noise=0.1):
    """Unit-norm class clusters of low intrinsic dimension embedded in ``dim``."""
    rng = np.random.default_rng(seed)
    latent_dim = min(latent_dim, dim)
    labels = np.arange(n) % n_classes
    z = rng.normal(size=(n_classes, latent_dim))[labels] + spread * rng.normal(size=(n, latent_dim))
    basis, _ = np.linalg.qr(rng.normal(size=(dim, latent_dim)))
    x = z @ basis.T
    x = x / np.linalg.norm(x, axis=1, keepdims=True) + noise * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def recall(approx, exact):
    return np.mean([np.intersect1d(a[a >= 0], e).size / e.size for a, e in zip(approx, exact)])


@pytest.mark.parametrize(
    "n, n_classes, dim",
    [(1200, 20, 64), (1200, 300, 64), (1200, 20, 512), (1200, 300, 512)],
    ids=["many_per_class_64d", "few_per_class_64d", "many_per_class_512d", "few_per_class_512d"],
)
def test_recall_against_exact_once_build_reaches_target(n, n_classes, dim):
    x, _ = clustered(n, n_classes, dim)
    k = 20
    idx, dist, graph = fanng_neighbours(x, k, seed=0, return_graph=True)
    assert graph.reached_target and graph.success_rate >= 0.98
    exact_idx, exact_dist = exact_knn(x, k, metric="squared_euclidean")
    assert recall(idx, exact_idx) >= 0.98
    # Rows ascending, the query itself never listed, distances are the true ones.
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert not np.any(idx == np.arange(n)[:, None])
    true = np.sum((x[idx] - x[:, None, :]) ** 2, axis=-1)
    np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dim", [32, 256], ids=["32d", "256d_principal_axes"])
def test_occlusion_rule_holds_on_every_edge(dim):
    x, _ = clustered(800, 40, dim, seed=1)
    graph = build_fanng(x, seed=3)
    x64 = x.astype(np.float64)
    checked = 0
    for a in range(len(x)):
        nbrs = graph.neighbours(a)
        assert len(set(nbrs.tolist())) == len(nbrs) and a not in nbrs
        d_a = np.sum((x64[nbrs] - x64[a]) ** 2, axis=1)
        np.testing.assert_allclose(graph.edge_lengths[a, : len(nbrs)], d_a, rtol=1e-4, atol=1e-6)
        assert np.all(np.diff(graph.edge_lengths[a, : len(nbrs)]) >= 0)  # sorted by length
        d_nn = np.sum((x64[nbrs][:, None] - x64[nbrs][None]) ** 2, axis=-1)
        np.fill_diagonal(d_nn, np.inf)
        # Edge a→b is occluded if some other neighbour c of a has d(c, b) < d(a, b).
        occluded = d_nn < d_a[None, :] * (1 - 1e-5) - 1e-7
        assert not occluded.any(), f"vertex {a}: occluded edges {np.argwhere(occluded)[:3]}"
        checked += len(nbrs)
    assert checked > len(x)  # the graph is not trivially empty


def test_deterministic_with_seed_and_seed_matters():
    x, _ = clustered(600, 30, 16, seed=2)
    g1, g2, g3 = build_fanng(x, seed=7), build_fanng(x, seed=7), build_fanng(x, seed=8)
    assert g1.traverse_adds == g2.traverse_adds
    np.testing.assert_array_equal(g1.adjacency, g2.adjacency)
    np.testing.assert_array_equal(fanng_search(g1, 10)[0], fanng_search(g2, 10)[0])
    assert g1.traverse_adds != g3.traverse_adds or not np.array_equal(g1.adjacency, g3.adjacency)
    # The initial capacity of the edge arrays does not change the graph.
    g4 = build_fanng(x, seed=7, initial_degree_capacity=2)
    np.testing.assert_array_equal(g1.adjacency, g4.adjacency)


def test_thread_count_does_not_change_results():
    x, _ = clustered(500, 25, 16, seed=4)
    graph = build_fanng(x, seed=0)
    a = fanng_search(graph, 8, num_threads=1)
    b = fanng_search(graph, 8, num_threads=2)
    np.testing.assert_array_equal(a[0], b[0])


def test_budget_controls_recall_and_missing_entries_are_marked():
    x, _ = clustered(1000, 50, 32, seed=5)
    graph = build_fanng(x, seed=0)
    exact_idx, _ = exact_knn(x, 10, metric="squared_euclidean")
    low = recall(fanng_search(graph, 10, budget=10)[0], exact_idx)
    high = recall(fanng_search(graph, 10, budget=400)[0], exact_idx)
    assert high >= low and high >= 0.98


def literal_backtrack_search(x, adjacency, degrees, q, k, budget):
    """FANNG Alg. 3 as printed: a priority queue of (distance, vertex, next edge), one edge per pop."""
    queue = [[0.0, q, 0]]
    visited, found = {q}, []
    while queue and len(found) < budget:
        entry = min(queue, key=lambda item: item[0])
        d_v, v, e = entry
        if e >= degrees[v]:
            queue.remove(entry)
            continue
        entry[2] = e + 1
        n = int(adjacency[v, e])
        if n in visited:
            continue
        visited.add(n)
        d = float(np.sum((x[n].astype(np.float64) - x[q]) ** 2))
        found.append((d, n))
        queue.append([d, n, 0])
    found.sort(key=lambda item: item[0])  # stable: ties keep the order found
    return [n for _, n in found[:k]], [d for d, _ in found[:k]]


@pytest.mark.parametrize("budget", [12, 40, 400])
def test_search_equals_the_literal_backtrack_search(budget):
    # Continuous coordinates: no two distances tie, so the queue order is unique.
    x = np.random.default_rng(3).normal(size=(300, 8)).astype(np.float32)
    graph = build_fanng(x, seed=0)
    k = 12
    indices, distances = fanng_search(graph, k, budget=budget)
    for sample in range(0, 300, 7):
        q = int(graph.positions[sample])
        want, want_d = literal_backtrack_search(graph.internal_embeddings, graph.internal_adjacency,
                                                graph.internal_degrees, q, k, budget)
        got = [int(graph.positions[i]) for i in indices[sample] if i >= 0]
        assert got == want
        np.testing.assert_allclose(distances[sample, : len(want)], want_d, rtol=1e-5)
        assert np.all(indices[sample, len(want):] == -1) and np.all(np.isinf(distances[sample, len(want):]))


def test_cap_on_traverse_adds_warns_and_records_rate():
    x, _ = clustered(400, 20, 16, seed=6)
    with pytest.warns(RuntimeWarning, match="success rate"):
        graph = build_fanng(x, max_traverse_adds=50, success_window=100)
    assert not graph.reached_target and graph.traverse_adds == 50
    idx, dist = fanng_search(graph, 5, budget=5)
    assert idx.shape == (400, 5)
    assert np.all((idx >= 0) | np.isinf(dist))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embeddings": np.zeros((5,), np.float32)}, "matrix"),
        ({"embeddings": np.full((5, 2), np.nan, np.float32)}, "NaN"),
        ({"embeddings": np.zeros((5, 2), np.float32), "target_success_rate": 1.5}, "target_success_rate"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_fanng(**kwargs)


def test_search_argument_errors():
    x, _ = clustered(100, 10, 8)
    graph = build_fanng(x)
    with pytest.raises(ValueError, match="k must be"):
        fanng_search(graph, 100)
    with pytest.raises(ValueError, match="budget"):
        fanng_search(graph, 10, budget=5)


def test_target_recall_picks_the_smallest_budget_that_reaches_it():
    # Small classes with heavy noise (the case, shrunk): the default budget falls short.
    x, _ = clustered(1500, 300, 64, seed=6, latent_dim=64, noise=0.6)
    k = 16
    exact_idx, _ = exact_knn(x, k, metric="squared_euclidean")
    graph = build_fanng(x, seed=0)
    assert recall(fanng_search(graph, k)[0], exact_idx) < 0.99  # default budget
    # Every vertex a calibration query: the measured recall is the recall of the whole search.
    calibration = calibrate_search_budget(graph, k, 0.99, calibration_queries=len(x))
    assert calibration.reached and calibration.queries == len(x) and calibration.budgets_tried > 1
    at_budget = recall(fanng_search(graph, k, budget=calibration.budget)[0], exact_idx)
    assert at_budget == pytest.approx(calibration.recall) and at_budget >= 0.99
    assert recall(fanng_search(graph, k, budget=calibration.budget - 1)[0], exact_idx) < 0.99  # smallest
    lower = calibrate_search_budget(graph, k, 0.9, calibration_queries=len(x))
    assert lower.budget < calibration.budget and 0.9 <= lower.recall < calibration.recall
    # Through fanng_neighbours, on a sample of queries: the whole search lands near the target.
    idx, _, same = fanng_neighbours(x, k, target_recall=0.99, calibration_queries=300, return_graph=True)
    sampled = same.search_calibration
    assert sampled.queries == 300 and sampled.recall >= 0.99 and sampled.target_recall == 0.99
    assert recall(idx, exact_idx) >= 0.98


def test_target_recall_arguments_are_checked():
    x, _ = clustered(200, 10, 8)
    graph = build_fanng(x, seed=0)
    with pytest.raises(ValueError, match="not both"):
        fanng_neighbours(x, 5, budget=100, target_recall=0.9)
    with pytest.raises(ValueError, match="target_recall"):
        calibrate_search_budget(graph, 5, 1.5)
    with pytest.raises(ValueError, match="calibration_queries"):
        calibrate_search_budget(graph, 5, 0.9, calibration_queries=0)
    assert graph.search_calibration is None
