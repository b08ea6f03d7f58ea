"""FANNG traverse-add (Harwood & Drummond 2016, Alg. 2 + 4) vs a literal Python loop.

The oracle follows the rules written in ``symm_keras.neighbors.fanng``'s docstring
one step at a time, in float64, on integer-valued points (every squared
distance is exact in float32 too, so ties are resolved identically):

* greedy search on the graph as it was at the start of the batch: stop with
  success when the target is a neighbour, else move to the strictly closest
  neighbour when it is strictly closer, else stop;
* merge in pair order: on failure at ``u`` add ``u → q`` unless ``q`` is already
  a neighbour of ``u`` or an edge added earlier in the batch occludes it,
  remove the edges of ``u`` it occludes, keep the list sorted by length (a new
  edge goes after existing edges of equal length);
* success rate over a sliding window; stop at the first search where the full
  window reaches the target.

``batch_size=1`` is the sequential FANNG Alg. 4.
"""

import bisect

import numpy as np
import pytest

from symm_keras.neighbors import fanng


def grid_points(n, dim, side, seed):
    rng = np.random.default_rng(seed)
    codes = rng.choice(side**dim, size=n, replace=False)  # distinct points
    return np.stack([(codes // side**j) % side for j in range(dim)], axis=1).astype(np.float32)


def oracle_build(x, seed, batch, target, window_size, max_adds):
    x64 = x.astype(np.float64)
    n = len(x)

    def dist(a, b):
        return float(np.sum((x64[a] - x64[b]) ** 2))

    adj = [[] for _ in range(n)]  # per vertex: [(length, neighbour)] sorted by length
    rng = np.random.default_rng(seed)
    target_hits = int(np.ceil(target * window_size - 1e-9))
    window, done = [], 0
    while done < max_adds:
        m = min(fanng._pair_chunk_size(n, batch), max_adds - done)
        pairs = fanng._random_pairs(rng, n, m)
        for lo in range(0, m, batch):
            frozen = [list(edges) for edges in adj]
            results = []
            for q, v in pairs[lo:lo + batch]:
                cur, dcur = int(v), dist(v, q)
                while True:
                    nbrs = [b for _, b in frozen[cur]]
                    if q in nbrs:
                        results.append((q, cur, dcur, True))
                        break
                    best, best_d = -1, dcur
                    for b in nbrs:  # first strictly closest in edge order
                        if dist(b, q) < best_d:
                            best, best_d = b, dist(b, q)
                    if best < 0:
                        results.append((q, cur, dcur, False))
                        break
                    cur, dcur = best, best_d
            for q, u, du, ok in results:
                if not ok:
                    edges = adj[u]
                    blocked = any(b == q or dist(q, b) < du for _, b in edges)
                    if not blocked:
                        kept = [(length, b) for length, b in edges if not dist(q, b) < length]
                        at = bisect.bisect_right([length for length, _ in kept], du)
                        kept.insert(at, (du, int(q)))
                        adj[u] = kept
                window.append(ok)
                done += 1
                recent = window[-window_size:]
                if len(window) >= window_size and sum(recent) >= target_hits:
                    return adj, done, sum(recent) / window_size
            if done >= max_adds:
                break
    recent = window[-window_size:]
    return adj, done, sum(recent) / len(recent)


@pytest.mark.parametrize("batch, early_stops", [(1, False), (7, False), (64, False), (7, True), (64, True)])
def test_build_matches_literal_traverse_add_loop(batch, early_stops, monkeypatch):
    monkeypatch.setattr(fanng, "_MIN_PARALLEL_BATCH", 16)  # batch 64 runs its searches in threads
    if early_stops:  # sum one coordinate at a time: distance sums stop as early as they can
        monkeypatch.setattr(fanng, "_WIDE_DIM", 1)
        monkeypatch.setattr(fanng, "_DISTANCE_SPAN", 1)
    x = grid_points(150, 4, 6, seed=batch)
    target, window, max_adds = 0.95, 100, 6000
    graph = fanng.build_fanng(x, target_success_rate=target, success_window=window,
                              max_traverse_adds=max_adds, seed=11, batch_size=batch,
                              initial_degree_capacity=2, num_threads=2, reorder=False,
                              use_principal_axes=False)
    adj, done, rate = oracle_build(x, 11, batch, target, window, max_adds)
    assert graph.traverse_adds == done
    assert graph.success_rate == pytest.approx(rate)
    assert graph.reached_target == (rate >= target)
    for v in range(len(x)):
        assert graph.neighbours(v).tolist() == [b for _, b in adj[v]], f"vertex {v}"
        np.testing.assert_array_equal(graph.edge_lengths[v, : graph.degrees[v]],
                                      np.array([length for length, _ in adj[v]], np.float32))


def test_parallel_build_independent_of_thread_count(monkeypatch):
    monkeypatch.setattr(fanng, "_MIN_PARALLEL_BATCH", 16)
    x = grid_points(400, 5, 6, seed=3)
    one = fanng.build_fanng(x, seed=5, batch_size=32, num_threads=1)
    two = fanng.build_fanng(x, seed=5, batch_size=32, num_threads=2)
    assert one.reached_target
    assert one.traverse_adds == two.traverse_adds
    np.testing.assert_array_equal(one.adjacency, two.adjacency)
    np.testing.assert_array_equal(one.edge_lengths, two.edge_lengths)


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        fanng.build_fanng(np.zeros((5, 2), np.float32), batch_size=0)


def test_locality_order_is_a_relabelling_of_the_plain_build():
    x = grid_points(300, 5, 6, seed=4)
    graph = fanng.build_fanng(x, seed=2, batch_size=16)
    order = graph.order
    assert sorted(order.tolist()) == list(range(len(x)))
    plain = fanng.build_fanng(x[order], seed=2, batch_size=16, reorder=False)
    assert plain.traverse_adds == graph.traverse_adds
    for p in range(len(x)):
        assert graph.neighbours(order[p]).tolist() == order[plain.neighbours(p)].tolist()
    np.testing.assert_array_equal(graph.embeddings, x)
    # Searches answer in sample ids.
    idx, dist = fanng.fanng_search(graph, 5, queries=[3, 7])
    plain_idx, plain_dist = fanng.fanng_search(plain, 5, queries=graph.positions[[3, 7]])
    np.testing.assert_array_equal(idx, order[plain_idx])
    np.testing.assert_array_equal(dist, plain_dist)


def test_principal_axes_build_is_the_plain_build_of_the_rotated_rows():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 128)) + 0.05 * rng.normal(size=(400, 128))
    x = x.astype(np.float32)
    graph = fanng.build_fanng(x, seed=1, batch_size=16)  # 128-d: principal axes by default
    rotation = graph.rotation
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(128), atol=1e-5)
    np.testing.assert_array_equal(graph.embeddings, x)
    np.testing.assert_array_equal(graph.internal_embeddings, x[graph.order] @ rotation)
    spread = graph.internal_embeddings.var(axis=0)
    assert spread[:8].sum() > 0.95 * spread.sum()  # variance in the leading coordinates
    plain = fanng.build_fanng(graph.internal_embeddings, seed=1, batch_size=16, reorder=False,
                              use_principal_axes=False)
    np.testing.assert_array_equal(plain.internal_adjacency, graph.internal_adjacency)
    np.testing.assert_array_equal(plain.internal_edge_lengths, graph.internal_edge_lengths)
    # Edge lengths are distances between the original rows (rotation changes only rounding).
    a, b = 0, graph.neighbours(0)
    np.testing.assert_allclose(graph.edge_lengths[0, : len(b)], np.sum((x[b] - x[a]) ** 2, axis=1), rtol=1e-4)


def test_distance_sums_stop_only_when_the_bound_is_reached():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 100)).astype(np.float32)
    head, tail = np.ascontiguousarray(x[:, :20]), np.ascontiguousarray(x[:, 20:])  # tail: spans 32+32+16
    full = float(np.sum((x[0].astype(np.float64) - x[1]) ** 2))
    head_sum = np.float32(fanng._sqdist(head, 0, 1))  # float32, as inside the build

    def below(bound):
        return fanng._finish_below(head_sum, tail, 0, 1, np.float32(bound), 32)

    total, complete = below(fanng._NO_BOUND)
    assert complete and total == pytest.approx(full, rel=1e-5)
    # Another compiled call site may order the additions inside a span
    # differently (fastmath, host CPU): equal up to float32 rounding only.
    assert fanng._distance(head, tail, 1, 0, 32) == pytest.approx(total, rel=1e-6)
    assert fanng._distance(head, tail, 1, 0, 32) == pytest.approx(full, rel=1e-5)
    for bound in [0.1 * full, 0.5 * full, 0.99 * full]:
        partial, complete = below(bound)
        # One function, one summation order: a stopped sum is a prefix of the full one.
        assert bound <= partial <= total
        assert complete == (partial == total)
    assert below(1.01 * full) == (total, True)


def test_greedy_step_bounds_never_exceed_the_full_distances():
    """The early-stopped sums of a greedy step are lower bounds of the distances the build uses elsewhere."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(40, 200)) * np.linspace(3.0, 0.1, 200)).astype(np.float32)
    head, tail = fanng._cache_aligned(x[:, :64]), fanng._cache_aligned(x[:, 64:])
    cur, q = 0, 1
    neighbours = np.arange(2, 40, dtype=np.int32)
    adj = np.full((40, len(neighbours)), -1, np.int32)
    adj[cur] = neighbours
    deg = np.zeros(40, np.int32)
    deg[cur] = len(neighbours)
    hop_d = np.empty(len(neighbours), np.float32)
    hop_complete = np.empty(len(neighbours), np.bool_)
    dcur = np.float32(fanng._distance(head, tail, cur, q, 64))
    best = fanng._closest_neighbour(head, tail, adj, deg, cur, q, dcur, 64, hop_d, hop_complete)
    exact = np.sum((x[neighbours].astype(np.float64) - x[q]) ** 2, axis=1)
    full = np.array([fanng._distance(head, tail, b, q, 64) for b in neighbours])
    np.testing.assert_allclose(full, exact, rtol=1e-5)
    assert not hop_complete.all()  # some sums did stop early
    np.testing.assert_allclose(hop_d[hop_complete], full[hop_complete], rtol=1e-6)
    assert np.all(hop_d[~hop_complete] <= full[~hop_complete] * (1 + 1e-6))
    assert best == int(np.argmin(exact)) and exact[best] < exact.max()


def test_locality_order_keeps_neighbours_close_in_memory():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 8)).astype(np.float32)
    order = fanng.locality_order(x, cell_size=32, seed=0)  # neighbors.tiled's, shared with the exact search
    assert sorted(order.tolist()) == list(range(len(x)))
    # Consecutive rows in the new order are far closer than in a random order.
    step = np.sum((x[order[1:]] - x[order[:-1]]) ** 2, axis=1).mean()
    random_step = np.sum((x[1:] - x[:-1]) ** 2, axis=1).mean()
    assert step < 0.6 * random_step


@pytest.mark.parametrize("dim", [64, 200], ids=["one_matrix", "head_and_tail"])
def test_build_rows_start_on_cache_lines(dim):
    x = np.random.default_rng(1).normal(size=(300, dim)).astype(np.float32)
    graph = fanng.build_fanng(x, seed=0)
    assert graph.internal_embeddings.ctypes.data % 64 == 0
    expected = x[graph.order] @ graph.rotation if dim >= 128 else x[graph.order]
    np.testing.assert_array_equal(graph.internal_embeddings, expected)


@pytest.mark.parametrize("shape", [(7, 5), (7, 0), (0, 3)])
def test_cache_aligned_copy_keeps_values_shape_and_dtype(shape):
    buffer = np.zeros(int(np.prod(shape)) * 4 + 20, np.uint8)
    odd = buffer[4:4 + int(np.prod(shape)) * 4].view(np.float32).reshape(shape)  # 4 bytes past 16-byte alignment
    odd[...] = np.arange(odd.size, dtype=np.float32).reshape(shape)
    aligned = fanng._cache_aligned(odd)
    assert aligned.flags.c_contiguous
    assert aligned.size == 0 or aligned.ctypes.data % 64 == 0  # an empty array has no rows to align
    assert aligned.shape == shape and aligned.dtype == np.float32
    np.testing.assert_array_equal(aligned, odd)
