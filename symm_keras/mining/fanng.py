"""FANNG: fast approximate nearest-neighbour graph (Harwood & Drummond, CVPR 2016).

Smart Mining (Harwood et al., ICCV 2017, Sec. 3.2.1) rebuilds a FANNG over the
whole training-set embedding at the start of every epoch and reads each
sample's neighbour list ``S_i`` off it:

1. **Traverse-add** (FANNG Alg. 4). Start from a graph without edges. Pick a
   random target vertex ``q`` and a random start vertex ``v``; run the naive
   greedy search (FANNG Alg. 2) from ``v`` towards ``q``. If it stops at a
   vertex ``u ≠ q``, add the edge ``u → q`` and drop every edge ``u → b`` that
   the new edge occludes. Repeat until the *measured* success rate of these
   searches reaches the target (98 % in the Smart Mining paper).
2. **Backtrack search** (FANNG Alg. 3) from every vertex, with the vertex as
   both query and start: a priority queue of ``(distance, vertex, next edge)``
   explores one edge at a time from the closest vertex that still has
   unexplored edges, until a budget of distance calculations is spent. It
   returns the ``k`` nearest vertices found, ascending, with their distances.

Occlusion rule: an edge ``a → b`` is occluded when an existing neighbour ``c`` of
``a`` has ``d(c, b) < d(a, b)``. Every graph built here satisfies, for every
vertex ``a`` and every two of its neighbours ``b, c``:
``d(b, c) ≥ max(d(a, b), d(a, c))`` (no edge is occluded by another).
Why traverse-add keeps this: the greedy search stopped at ``u``, so no
neighbour ``c`` of ``u`` is closer to ``q`` than ``u`` (the new edge is not
occluded), and the edges the new one occludes are removed.

Distances are squared Euclidean (the Smart Mining paper, Fig. 2); orderings and
the occlusion rule are the same as for Euclidean distance.

Details the papers leave open, and what this module chooses:

* *Greedy step* (Alg. 2): move to the neighbour closest to the target if it is
  strictly closer than the current vertex (steepest descent), else stop; the
  search succeeds at once when the target itself is a neighbour.
* *Success rate*: share of successful traverse-add searches over a sliding
  window of the most recent ``success_window`` searches (default 1,000); the
  build stops as soon as the window is full and reaches the target. A cap of
  ``max_traverse_adds`` searches (default ``200 · N``) bounds the build; the
  reached rate is recorded in :class:`FanngGraph` and a warning is issued when
  the cap stops the build first.
* *Random pairs*: ``q`` uniform, ``v`` uniform among the other ``N − 1``
  vertices, drawn from ``numpy.random.default_rng(seed)``: the graph and the
  neighbour lists are a deterministic function of the embeddings and the seed.
* *Edge lists* are kept sorted by length (the backtrack search explores the
  shortest unexplored edge first); there is no degree cap.
* *Search budget*: counts distance calculations; the query's distance to
  itself (0) is free. Default ``max(32·k, 2·k + 200)`` (recall@30 ≈ 0.99 on
  the benchmark's clustered 20k × 64 set; 8·k gave 0.85).
* *Neighbour lists* exclude the query vertex itself. If the budget or a
  disconnected graph yields fewer than ``k`` vertices, the rest of the row is
  ``-1`` with distance ``inf``.
* *Parallelism*: the build is sequential (it mutates the graph); the
  neighbour-list searches do not modify the graph and run in parallel threads
  (the paper notes they can).

Speed: both loops are compiled with numba (a dependency of pynndescent; install
``symm_keras[ann]``). Plain Python loops would take hours at SOP size.
"""

import dataclasses
import math
import time
import warnings

import numpy as np

try:  # numba compiles the graph loops; without it the "fanng" source is unavailable.
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None

_DONE, _OVERFLOW, _EXHAUSTED = 0, 1, 2


def _require_numba():
    if numba is None:
        raise ImportError(
            "the FANNG neighbour source needs numba (`pip install numba`, or "
            "`pip install symm_keras[ann]`); use source='exact' otherwise."
        )


if numba is not None:
    _jit = numba.njit(cache=True, fastmath=True, nogil=True)
    _pjit = numba.njit(cache=True, fastmath=True, nogil=True, parallel=True)
    _prange = numba.prange

    @_jit
    def _sqdist(x, a, b):
        s = np.float32(0.0)
        for t in range(x.shape[1]):
            diff = x[a, t] - x[b, t]
            s += diff * diff
        return s

    @_jit
    def _traverse_add(x, adj, lens, deg, pairs, window, state, target_hits, seen, seen_d):
        """Traverse-add over ``pairs``; see module docstring.

        ``state`` = [window position, hits in window, searches recorded,
        edges added, distance calculations, search stamp]. ``seen``/``seen_d``
        cache each search's distances to its target (a vertex reached twice
        is not recomputed). Returns (pairs consumed, status).
        """
        cap = adj.shape[1]
        w = window.shape[0]
        keep_idx = np.empty(cap, np.int32)
        for it in range(pairs.shape[0]):
            q = pairs[it, 0]
            cur = pairs[it, 1]
            state[5] += 1
            stamp = state[5]
            dcur = _sqdist(x, cur, q)
            calcs = 1
            found = False
            while not found:
                best = -1
                best_d = dcur
                for e in range(deg[cur]):
                    n = adj[cur, e]
                    if n == q:  # distance 0: greedy moves to the target and stops there
                        found = True
                        break
                    if seen[n] == stamp:
                        d = seen_d[n]
                    else:
                        d = _sqdist(x, n, q)
                        seen[n] = stamp
                        seen_d[n] = d
                        calcs += 1
                    if d < best_d:
                        best_d = d
                        best = n
                if found or best < 0:
                    break
                cur = best
                dcur = best_d
            success = found or cur == q
            if not success:
                kept = 0
                for e in range(deg[cur]):
                    b = adj[cur, e]
                    if seen[b] == stamp:
                        d = seen_d[b]
                    else:
                        d = _sqdist(x, q, b)
                        calcs += 1
                    if not (d < lens[cur, e]):  # q occludes cur→b when d(q,b) < d(cur,b)
                        keep_idx[kept] = e
                        kept += 1
                if kept + 1 > cap:
                    return it, _OVERFLOW  # caller widens the arrays and redoes this pair
                # Compact the kept edges and insert cur→q in length order.
                inserted = False
                out = 0
                new_adj = np.empty(kept + 1, np.int32)
                new_len = np.empty(kept + 1, np.float32)
                for j in range(kept):
                    e = keep_idx[j]
                    if not inserted and dcur < lens[cur, e]:
                        new_adj[out] = q
                        new_len[out] = dcur
                        out += 1
                        inserted = True
                    new_adj[out] = adj[cur, e]
                    new_len[out] = lens[cur, e]
                    out += 1
                if not inserted:
                    new_adj[out] = q
                    new_len[out] = dcur
                    out += 1
                for j in range(out):
                    adj[cur, j] = new_adj[j]
                    lens[cur, j] = new_len[j]
                deg[cur] = out
                state[3] += 1
            state[4] += calcs
            pos = state[0]
            if state[2] >= w:
                state[1] -= window[pos]
            window[pos] = 1 if success else 0
            state[1] += window[pos]
            state[0] = (pos + 1) % w
            state[2] += 1
            if state[2] >= w and state[1] >= target_hits:
                return it + 1, _DONE
        return pairs.shape[0], _EXHAUSTED

    @_jit
    def _heap_push(keys, verts, edges, size, key, vert, edge):
        i = size
        keys[i] = key
        verts[i] = vert
        edges[i] = edge
        while i > 0:
            parent = (i - 1) >> 1
            if keys[parent] <= keys[i]:
                break
            keys[i], keys[parent] = keys[parent], keys[i]
            verts[i], verts[parent] = verts[parent], verts[i]
            edges[i], edges[parent] = edges[parent], edges[i]
            i = parent
        return size + 1

    @_jit
    def _heap_sift_down(keys, verts, edges, size):
        i = 0
        while True:
            left = 2 * i + 1
            if left >= size:
                break
            small = left
            right = left + 1
            if right < size and keys[right] < keys[left]:
                small = right
            if keys[i] <= keys[small]:
                break
            keys[i], keys[small] = keys[small], keys[i]
            verts[i], verts[small] = verts[small], verts[i]
            edges[i], edges[small] = edges[small], edges[i]
            i = small

    @_jit
    def _backtrack_one(x, adj, deg, q, k, budget, stamp, tag, keys, verts, edges,
                       found, found_d, out_idx, out_d):
        """FANNG Alg. 3 for query vertex ``q`` starting at ``q``; fills out rows."""
        size = _heap_push(keys, verts, edges, 0, np.float32(0.0), q, 0)
        stamp[q] = tag
        n_found = 0
        calcs = 0
        while size > 0 and calcs < budget:
            v = verts[0]
            e = edges[0]
            if e >= deg[v]:  # no unexplored edge left: drop v from the queue
                size -= 1
                keys[0] = keys[size]
                verts[0] = verts[size]
                edges[0] = edges[size]
                _heap_sift_down(keys, verts, edges, size)
                continue
            edges[0] = e + 1  # v stays in the queue with its next edge (same key)
            n = adj[v, e]
            if stamp[n] == tag:
                continue
            stamp[n] = tag
            d = _sqdist(x, n, q)
            calcs += 1
            found[n_found] = n
            found_d[n_found] = d
            n_found += 1
            size = _heap_push(keys, verts, edges, size, d, n, 0)
        order = np.argsort(found_d[:n_found], kind="mergesort")
        m = min(k, n_found)
        for j in range(m):
            out_idx[j] = found[order[j]]
            out_d[j] = found_d[order[j]]
        for j in range(m, k):
            out_idx[j] = -1
            out_d[j] = np.inf
        return calcs

    @_pjit
    def _backtrack_all(x, adj, deg, queries, k, budget, n_chunks):
        n = x.shape[0]
        nq = queries.shape[0]
        out_idx = np.empty((nq, k), np.int64)
        out_d = np.empty((nq, k), np.float32)
        calcs = np.zeros(n_chunks, np.int64)
        per = (nq + n_chunks - 1) // n_chunks
        for c in _prange(n_chunks):
            stamp = np.full(n, -1, np.int64)
            keys = np.empty(budget + 2, np.float32)
            verts = np.empty(budget + 2, np.int32)
            edges = np.empty(budget + 2, np.int32)
            found = np.empty(budget + 1, np.int64)
            found_d = np.empty(budget + 1, np.float32)
            total = 0
            for i in range(c * per, min(nq, (c + 1) * per)):
                total += _backtrack_one(x, adj, deg, queries[i], k, budget, stamp, i,
                                        keys, verts, edges, found, found_d,
                                        out_idx[i], out_d[i])
            calcs[c] = total
        return out_idx, out_d, calcs


@dataclasses.dataclass
class FanngGraph:
    """A FANNG over ``embeddings`` (float32, C-contiguous) and its build record.

    ``adjacency[v, :degrees[v]]`` are the out-neighbours of ``v`` sorted by
    squared length ``edge_lengths[v, :degrees[v]]``.
    """

    embeddings: np.ndarray
    adjacency: np.ndarray
    edge_lengths: np.ndarray
    degrees: np.ndarray
    traverse_adds: int
    success_rate: float
    target_success_rate: float
    distance_calculations: int
    build_seconds: float

    @property
    def reached_target(self):
        return self.success_rate >= self.target_success_rate

    def neighbours(self, v):
        """Out-neighbours of vertex ``v`` (shortest edge first)."""
        return self.adjacency[v, : self.degrees[v]].copy()

    def search(self, k, budget=None, queries=None, num_threads=None):
        """Backtrack search from each query vertex (all by default); see :func:`fanng_search`."""
        return fanng_search(self, k, budget=budget, queries=queries, num_threads=num_threads)


def _as_float32_matrix(embeddings, name="embeddings"):
    x = np.ascontiguousarray(np.asarray(embeddings), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (n, dim) matrix, got shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows, got {x.shape[0]}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf values.")
    return x


def build_fanng(embeddings, target_success_rate=0.98, success_window=1000,
                max_traverse_adds=None, seed=0, initial_degree_capacity=32):
    """Build a FANNG by traverse-add until the measured success rate reaches the target.

    Args:
        embeddings: ``(N, D)`` array.
        target_success_rate: stop once this share of the last ``success_window``
            greedy searches found their target (Smart Mining: 0.98).
        success_window: number of recent searches the rate is measured over
            (capped at ``N``).
        max_traverse_adds: hard cap on searches; default ``200 · N``.
        seed: seed of the random (target, start) pairs.
        initial_degree_capacity: starting width of the adjacency arrays (they
            grow as needed; does not change the result).

    Returns:
        :class:`FanngGraph`.
    """
    _require_numba()
    if not 0.0 < target_success_rate <= 1.0:
        raise ValueError(f"target_success_rate must be in (0, 1], got {target_success_rate}.")
    if int(success_window) < 1:
        raise ValueError(f"success_window must be >= 1, got {success_window}.")
    x = _as_float32_matrix(embeddings)
    n = x.shape[0]
    start = time.perf_counter()
    window_size = int(min(success_window, n))
    max_adds = int(200 * n if max_traverse_adds is None else max_traverse_adds)
    target_hits = int(math.ceil(target_success_rate * window_size - 1e-9))
    cap = max(2, int(initial_degree_capacity))
    adj = np.full((n, cap), -1, np.int32)
    lens = np.full((n, cap), np.inf, np.float32)
    deg = np.zeros(n, np.int32)
    window = np.zeros(window_size, np.int64)
    state = np.zeros(6, np.int64)
    seen = np.zeros(n, np.int64)
    seen_d = np.zeros(n, np.float32)
    rng = np.random.default_rng(seed)
    chunk = max(1024, min(n, 1 << 16))
    done = 0
    status = _EXHAUSTED
    pairs = np.empty((0, 2), np.int32)
    while done < max_adds:
        if len(pairs) == 0:
            m = min(chunk, max_adds - done)
            q = rng.integers(0, n, m)
            v = (q + 1 + rng.integers(0, n - 1, m)) % n
            pairs = np.stack([q, v], axis=1).astype(np.int32)
        used, status = _traverse_add(x, adj, lens, deg, pairs, window, state, target_hits,
                                     seen, seen_d)
        done += used
        pairs = pairs[used:]
        if status == _DONE:
            break
        if status == _OVERFLOW:
            cap *= 2
            adj = np.concatenate([adj, np.full((n, cap - adj.shape[1]), -1, np.int32)], axis=1)
            lens = np.concatenate([lens, np.full((n, cap - lens.shape[1]), np.inf, np.float32)], axis=1)
    recorded = int(min(state[2], window_size))
    rate = float(state[1]) / recorded if recorded else 0.0
    if status != _DONE:
        warnings.warn(
            f"FANNG build stopped after max_traverse_adds={max_adds} searches with a "
            f"success rate of {rate:.3f} (< target {target_success_rate}).",
            RuntimeWarning,
            stacklevel=2,
        )
    width = max(1, int(deg.max()))
    return FanngGraph(
        embeddings=x,
        adjacency=np.ascontiguousarray(adj[:, :width]),
        edge_lengths=np.ascontiguousarray(lens[:, :width]),
        degrees=deg,
        traverse_adds=int(done),
        success_rate=rate,
        target_success_rate=float(target_success_rate),
        distance_calculations=int(state[4]),
        build_seconds=time.perf_counter() - start,
    )


def default_search_budget(k):
    """Default distance-calculation budget of the backtrack search for ``k`` neighbours."""
    return int(max(32 * k, 2 * k + 200))


def fanng_search(graph, k, budget=None, queries=None, num_threads=None):
    """Backtrack search (FANNG Alg. 3) from each query vertex, which is also the start.

    Args:
        graph: a :class:`FanngGraph`.
        k: neighbours per query (the query itself excluded).
        budget: distance calculations per query; default :func:`default_search_budget`.
        queries: vertex ids to search for; default all vertices.
        num_threads: numba threads (default: numba's default).

    Returns:
        ``(indices, squared_distances)``: ``(Q, k)`` int64 and float32, each row
        ascending; ``-1``/``inf`` where fewer than ``k`` vertices were reached.
    """
    _require_numba()
    n = graph.embeddings.shape[0]
    k = int(k)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} embeddings, got {k}.")
    budget = default_search_budget(k) if budget is None else int(budget)
    if budget < k:
        raise ValueError(f"search budget ({budget} distance calculations) must be >= k ({k}).")
    queries = np.arange(n, dtype=np.int64) if queries is None else np.asarray(queries, np.int64)
    if queries.ndim != 1 or (queries.size and (queries.min() < 0 or queries.max() >= n)):
        raise ValueError(f"queries must be a vector of vertex ids in [0, {n}).")
    threads = numba.get_num_threads() if num_threads is None else int(num_threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        n_chunks = max(1, min(len(queries), 8 * numba.get_num_threads()))
        idx, dist, _ = _backtrack_all(graph.embeddings, graph.adjacency, graph.degrees,
                                      queries, k, budget, n_chunks)
    finally:
        numba.set_num_threads(previous)
    return idx, dist


def fanng_neighbours(embeddings, k, budget=None, target_success_rate=0.98, success_window=1000,
                     max_traverse_adds=None, seed=0, num_threads=None, return_graph=False):
    """Each sample's ``k`` nearest neighbours via a fresh FANNG (Smart Mining Sec. 3.2.1).

    Returns ``(indices, squared_distances)`` (and the :class:`FanngGraph` when
    ``return_graph``).
    """
    graph = build_fanng(embeddings, target_success_rate=target_success_rate,
                        success_window=success_window, max_traverse_adds=max_traverse_adds,
                        seed=seed)
    idx, dist = fanng_search(graph, k, budget=budget, num_threads=num_threads)
    return (idx, dist, graph) if return_graph else (idx, dist)
