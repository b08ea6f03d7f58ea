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
occluded), and the edges the new one occludes are removed. In a batched build
(below) ``u`` may have gained edges since its search; the merge re-checks them
and skips an edge ``u → q`` that one of them now occludes.

Distances are squared Euclidean (the Smart Mining paper, Fig. 2); orderings and
the occlusion rule are the same as for Euclidean distance.

Where each detail comes from. [SM] = the Smart Mining paper (Sec. 3.2.1),
[HD] = Harwood & Drummond's FANNG paper, [ours] = left open by both, chosen here:

* [HD] traverse-add (Alg. 4), naive greedy search (Alg. 2), backtrack search
  with a priority queue and a budget of distance calculations (Alg. 3), the
  occlusion rule. [SM] the build runs until the measured success rate reaches
  98 %; the backtrack search runs from every vertex with itself as query and
  start, returns ``k`` neighbours ascending with distances, in parallel;
  squared Euclidean distances (Fig. 2; orderings and the occlusion rule are
  the same as for Euclidean distance).
* [ours] *Greedy step*: move to the neighbour closest to the target if it is
  strictly closer than the current vertex (steepest descent), else stop; the
  search succeeds at once when the target itself is a neighbour (checked on
  the edge list before any distance is computed).
* [ours] *Success rate*: share of successful traverse-add searches over a
  sliding window of the most recent ``success_window`` searches (default
  1,000); the build stops as soon as the window is full and reaches the
  target. A cap of ``max_traverse_adds`` searches (default ``200 · N``) bounds
  the build; the reached rate is recorded in :class:`FanngGraph` and a
  warning is issued when the cap stops the build first.
* [ours] *Random pairs*: ``q`` uniform, ``v`` uniform among the other
  ``N − 1`` vertices, drawn from ``numpy.random.default_rng(seed)``: the graph
  and the neighbour lists are a deterministic function of the embeddings, the
  seed and the batch size.
* [ours] *Edge lists* are kept sorted by length (the backtrack search explores
  the shortest unexplored edge first); a new edge goes after existing edges of
  equal length; there is no degree cap.
* [ours] *Search budget*: counts distance calculations; the query's distance
  to itself (0) is free. Default ``max(40·k, 2·k + 200)`` (1,200 for k = 30:
  recall@30 ≈ 0.99 on the benchmark's clustered SOP-size sets, 64-d and 512-d;
  32·k gave 0.978 there). A fixed budget gives a recall that depends on the
  data (recall@16 0.926 on 1,200 classes × 5 points, 64-d, noise 0.6;
  ``docs/neighbors.md``), so :func:`fanng_neighbours` also takes a
  ``target_recall`` instead.
* [ours] *Target recall*: :func:`calibrate_search_budget` measures
  recall@k (the share of each query's exact ``k`` nearest other samples that
  the search returns; ties at the k-th distance may count as misses) on
  ``calibration_queries`` samples drawn with the seed (default 1,000), against
  :func:`symm_keras.neighbors.exact.exact_knn`, and picks the smallest budget
  that reaches the target: the default budget, doubled until it reaches it
  (at most ``N − 1``, every other vertex), then bisected. The search is
  deterministic and a larger budget only explores further, so the recall of
  a query never drops as the budget grows and the bisection is exact for the
  sample. The chosen budget and the recall reached are returned as a
  :class:`BudgetCalibration`, logged, and a warning is issued when even
  ``N − 1`` falls short.
* [ours] *Neighbour lists* exclude the query vertex itself. If the budget or a
  disconnected graph yields fewer than ``k`` vertices, the rest of the row is
  ``-1`` with distance ``inf``.
* [ours] *Parallel build*: traverse-add runs in batches of ``batch_size``
  random pairs (default ``min(4096, max(1, N // 16))``). The batch's greedy
  searches run in parallel threads on the graph as it was at the start of the
  batch; their results are then merged one by one in pair order: the success
  window records each search, and a failed search at ``u`` adds ``u → q``
  (with the occlusion re-check above when ``u`` changed earlier in the batch).
  The build may stop in the middle of a batch (the rest of it is discarded).
  A batch of ``1`` is the sequential FANNG Alg. 4; any batch size gives a
  graph that depends only on the embeddings, the seed and the batch size,
  never on the thread count. Batches under 1,024 pairs (``N`` < 16,384 by
  default) run in one thread: starting the threads costs more than it saves.
* [ours] *Locality order*: by default the vertices are renumbered in the
  order of :func:`symm_keras.neighbors.tiled.locality_order` (the one the tiled
  exact search uses: nearest-seed cells along the seeds' principal direction)
  before the build, so that neighbouring vertices share cache lines and
  pages; the random pairs are drawn in that numbering. Results are reported
  in sample ids.
* [ours] *Principal axes*: for ``D ≥ 128`` (``use_principal_axes``) the graph
  is built and searched on the embeddings rotated onto their principal axes,
  largest variance first. A rotation keeps every distance (up to float32
  rounding, so near-ties may resolve differently from an unrotated build); it
  puts most of each distance into the leading coordinates, which is what lets
  the greedy search stop a sum early (next item).
* [ours] *Speed only, results unchanged*: for ``D ≥ 128`` the build keeps the
  first 64 (rotated) coordinates of every row in a compact head matrix that
  stays in the CPU cache, and the rest in a tail matrix. A greedy step takes
  every neighbour's head sum (a lower bound of its distance), then completes
  only the neighbours whose bound can still beat the best so far, smallest
  bound first, each sum stopping once it cannot win (ties go to the earlier
  edge): the path is the one full distances give. A failed search completes a
  stopped sum only where the occlusion test needs it. Every distance of a
  build is summed head first, then 64-coordinate spans of the tail, and a sum
  that stops early is a prefix of the full sum, hence a lower bound of it
  (float addition of non-negative terms is monotone). The loops are compiled
  with ``fastmath``, so the compiler may reorder the additions *inside* a
  span differently at different call sites and on different CPUs: two
  computations of one pair may differ in the last bit. No decision of the
  build compares two computations of the same pair (the greedy step, the
  occlusion test and the merge's re-check all compare the distances of two
  different pairs), so this changes only how near-ties resolve, as any
  rounding does; ``"no bound"`` is the largest float32, never ``inf``, which
  ``fastmath`` lets the compiler assume away. The backtrack search sums in
  one pass (it needs every distance in full). Before a greedy step
  reads its neighbours' rows it prefetches them (LLVM ``prefetch``), so their
  memory latencies overlap; each time a neighbour becomes the step's best so
  far, the degree and edge list of that neighbour (what the next step reads
  first) are prefetched too. A thread also loads its next searches' first
  step ahead: two searches ahead the target and start rows and the start's
  edge list, one search ahead the start's neighbours' rows. Tested against
  the literal loop with a head of one coordinate and spans of one.
* [ours] *Speed only, results unchanged*: the rows the build and the search
  read are copied to start on a 64-byte cache line (numpy guarantees 16
  bytes), so a row of 64 float32 spans four cache lines, not five.
* [ours] *Speed only, results unchanged*: the backtrack search prefetches a
  vertex's neighbour rows when it first expands it, and keeps the ``k``
  nearest vertices met in a bounded heap (nearest first, ties to the one
  found first) instead of sorting everything met at the end. Tested against
  a literal Alg. 3 loop.

Speed: the loops are compiled with numba (a dependency of symm_keras); plain
Python loops would take hours at SOP size. The cost is random memory access:
every distance reads a row of the embedding matrix. Figures:
``docs/benchmarks.md``.
"""

import contextlib
import dataclasses
import functools
import logging
import math
import time
import warnings

import numpy as np

try:  # numba compiles the graph loops
    import numba
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "FANNG needs numba (`pip install numba`; symm_keras declares it as a dependency); "
        "use source='exact' otherwise."
    ) from error

from symm_keras.neighbors.exact import exact_knn
from symm_keras.neighbors.sources import drop_self_matches
from symm_keras.neighbors.tiled import locality_order

_LOG = logging.getLogger(__name__)

_DONE, _OVERFLOW, _EXHAUSTED = 0, 1, 2
_MIN_PARALLEL_BATCH = 1024  # smaller batches run their searches in one thread
_WIDE_DIM = 128  # from this width: principal axes, and distance sums that may stop early
_DISTANCE_SPAN = 64  # coordinates per partial sum (four cache lines of float32)
_CACHE_LINE = 64  # bytes
_NO_BOUND = np.float32(np.finfo(np.float32).max)  # "never stop" for _finish_below: fastmath assumes no inf


_jit = numba.njit(cache=True, fastmath=True, nogil=True)
# Small helpers of the inner loops are inlined by numba itself (no call
# overhead). Each use still costs an atomic reference count per array
# argument, so the backtrack search writes out its per-distance queue push.
_inline_jit = numba.njit(cache=True, fastmath=True, nogil=True, inline="always")
_pjit = numba.njit(cache=True, fastmath=True, nogil=True, parallel=True)
_prange = numba.prange

def _prefetch_codegen(context, builder, signature, args):
    """LLVM ``prefetch`` of the element of array ``args[0]`` at the indices ``args[1:]``."""
    array_type = signature.args[0]
    array = context.make_array(array_type)(context, builder, args[0])
    index = [context.cast(builder, value, kind, numba.types.intp)
             for value, kind in zip(args[1:], signature.args[1:])]
    pointer = builder.bitcast(
        cgutils.get_item_pointer(context, builder, array_type, array, index, wraparound=False),
        ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    suffix = "p0" if str(pointer.type) == "ptr" else "p0i8"  # opaque or typed LLVM pointers
    prefetch = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]),
        f"llvm.prefetch.{suffix}")
    # read, high temporal locality, data cache
    builder.call(prefetch, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
    return context.get_dummy_value()

@intrinsic
def _prefetch(typingctx, x, row, col):
    """Hint the CPU to load the cache line holding ``x[row, col]``."""
    return numba.types.void(x, row, col), _prefetch_codegen

@intrinsic
def _prefetch_item(typingctx, x, i):
    """Hint the CPU to load the cache line holding ``x[i]`` of a vector."""
    return numba.types.void(x, i), _prefetch_codegen

@_inline_jit
def _prefetch_vertex(adj, deg, v):
    """Start loading what a greedy step at ``v`` reads first: its degree and edge list."""
    _prefetch_item(deg, v)
    _prefetch(adj, v, 0)

@_inline_jit
def _prefetch_row(x, r):
    """Start loading row ``r`` of ``x``."""
    for col in range(0, x.shape[1], 16):  # 16 float32 = one 64-byte cache line
        _prefetch(x, r, col)

@_inline_jit
def _prefetch_rows(x, adj, deg, v):
    """Start loading the rows of ``x`` of every neighbour of ``v``.

    A search then reads those rows one after another; with the loads already in
    flight their memory latencies overlap instead of adding up.
    """
    for e in range(deg[v]):
        _prefetch_row(x, adj[v, e])

@_jit
def _sqdist(x, a, b):
    s = np.float32(0.0)
    for t in range(x.shape[1]):
        diff = x[a, t] - x[b, t]
        s += diff * diff
    return s

@_jit
def _span_sum(x, a, b, start, stop):
    part = np.float32(0.0)
    for t in range(np.uint64(start), np.uint64(stop)):  # unsigned: no wraparound test, vectorises
        diff = x[a, t] - x[b, t]
        part += diff * diff
    return part

@_jit
def _finish_below(s, tail, a, b, bound, span):
    """Add the ``tail`` coordinates of rows ``a, b`` to the head's sum ``s``, ``span`` at a time.

    Stops once the sum reaches ``bound`` (finite: ``fastmath`` assumes no
    ``inf``). Returns ``(sum, complete)``: when ``complete`` is false the sum
    is a prefix of the full sum, so a lower bound ``≥ bound`` of it.
    """
    rest = tail.shape[1]
    if s >= bound:
        return s, rest == 0
    for start in range(0, rest, span):
        s += _span_sum(tail, a, b, start, min(start + span, rest))
        if s >= bound:
            return s, start + span >= rest
    return s, True

@_jit
def _distance(head, tail, a, b, span):
    """The squared distance every step of a build uses: head coordinates, then the tail's spans."""
    return _finish_below(_sqdist(head, a, b), tail, a, b, _NO_BOUND, span)[0]

@_jit
def _closest_neighbour(head, tail, adj, deg, cur, q, dcur, span, hop_d, hop_complete):
    """Greedy step on split rows: the first strictly closest neighbour of ``cur`` to ``q``.

    Returns its edge index, or ``-1`` when none is closer than ``dcur``.
    Rows are split ``head | tail``: every neighbour's head sum first (a
    lower bound of its distance), then only the neighbours whose bound can
    still win are completed, smallest bound first, each stopping once it
    cannot win. Same answer as comparing full distances in edge order
    (ties: the earlier edge). Leaves in ``hop_d[e]`` the distance, or where
    ``hop_complete[e]`` is false a lower bound.
    """
    best = -1
    best_d = dcur
    for e in range(deg[cur]):
        hop_d[e] = _sqdist(head, adj[cur, e], q)
        hop_complete[e] = False
    while True:
        pick = -1
        for e in range(deg[cur]):  # the lowest bound that can still win (ties: the earlier edge)
            if hop_complete[e]:
                continue
            if hop_d[e] < best_d or (hop_d[e] == best_d and e < best):
                if pick < 0 or hop_d[e] < hop_d[pick]:
                    pick = e
        if pick < 0:
            return best
        # An earlier edge also wins a tie, so its sum may go up to best_d itself.
        bound = np.nextafter(best_d, _NO_BOUND) if pick < best else best_d
        hop_d[pick], hop_complete[pick] = _finish_below(hop_d[pick], tail, adj[cur, pick], q, bound,
                                                        span)
        if hop_complete[pick] and hop_d[pick] < bound:
            best = pick
            best_d = hop_d[pick]
            _prefetch_vertex(adj, deg, adj[cur, best])

@_jit
def _greedy(head, tail, adj, deg, q, v, span, hop_d, hop_complete):
    """FANNG Alg. 2 from ``v`` towards ``q``: returns (stop vertex, its distance, found, calcs).

    On return ``hop_d[e]`` holds ``d(q, b)`` for the stop vertex's ``e``-th
    neighbour ``b``, or a lower bound where ``hop_complete[e]`` is false (see
    :func:`_closest_neighbour`). No cache across hops: a vertex seen again is
    still in the CPU cache.
    """
    wide = tail.shape[1] > 0
    cur = v
    dcur = _distance(head, tail, cur, q, span)
    calcs = 1
    while True:
        for e in range(deg[cur]):  # the target is a neighbour: distance 0, success
            if adj[cur, e] == q:
                return q, np.float32(0.0), True, calcs
        _prefetch_rows(head, adj, deg, cur)
        if wide:
            best = _closest_neighbour(head, tail, adj, deg, cur, q, dcur, span, hop_d,
                                      hop_complete)
        else:  # full distances: the first strict minimum in edge order
            best = -1
            best_d = dcur
            for e in range(deg[cur]):
                d = _sqdist(head, adj[cur, e], q)
                hop_d[e] = d
                hop_complete[e] = True
                if d < best_d:
                    best_d = d
                    best = e
                    _prefetch_vertex(adj, deg, adj[cur, e])
        calcs += deg[cur]
        if best < 0:
            return cur, dcur, False, calcs
        cur = adj[cur, best]
        dcur = hop_d[best]

@_jit
def _search_slot(head, tail, adj, lens, deg, pairs, lo, first, last, span, out_u, out_d, out_ok,
                 out_calcs, occ_d):
    """Greedy searches for batch items ``first..last-1`` (pairs ``lo + j``) on the frozen graph.

    For a failed search stopping at ``u`` it also records ``d(q, b)`` for every
    current neighbour ``b`` of ``u`` (the occlusion test of the merge; a lower
    bound already ``≥ d(u, b)`` decides that test and is kept as is). An
    item's result depends only on the graph and its pair, not on the thread.
    """
    hop_d = np.empty(adj.shape[1], np.float32)
    hop_complete = np.empty(adj.shape[1], np.bool_)
    for j in range(first, last):
        i = lo + j
        # The first step of a search is all cache misses; load it ahead: two
        # searches ahead the target and start rows with the start's edge list,
        # one search ahead (that edge list now cached) its neighbours' rows.
        if j + 2 < last:
            _prefetch_row(head, pairs[i + 2, 0])
            _prefetch_row(head, pairs[i + 2, 1])
            _prefetch_vertex(adj, deg, pairs[i + 2, 1])
        if j + 1 < last:
            _prefetch_rows(head, adj, deg, pairs[i + 1, 1])
        q = pairs[i, 0]
        u, du, ok, calcs = _greedy(head, tail, adj, deg, q, pairs[i, 1], span, hop_d, hop_complete)
        if not ok:
            for e in range(deg[u]):
                if not hop_complete[e] and hop_d[e] < lens[u, e]:
                    hop_d[e] = _distance(head, tail, q, adj[u, e], span)
                occ_d[j, e] = hop_d[e]
        out_u[j] = u
        out_d[j] = du
        out_ok[j] = ok
        out_calcs[j] = calcs

@_pjit
def _search_batch(head, tail, adj, lens, deg, pairs, lo, hi, n_slots, span, out_u, out_d, out_ok,
                  out_calcs, occ_d):
    """:func:`_search_slot` over ``pairs[lo:hi]``, split into ``n_slots`` parallel parts."""
    count = hi - lo
    per = (count + n_slots - 1) // n_slots
    for c in _prange(n_slots):
        _search_slot(head, tail, adj, lens, deg, pairs, lo, c * per, min(count, (c + 1) * per), span,
                     out_u, out_d, out_ok, out_calcs, occ_d)

@_jit
def _merge_batch(head, tail, adj, lens, deg, pairs, lo, hi, start, span, out_u, out_d, out_ok,
                 out_calcs, occ_d, touched, batch_tag, window, state, target_hits):
    """Apply the batch's results in pair order (deterministic); see module docstring.

    ``state`` = [window position, hits in window, searches recorded, edges added,
    distance calculations]. Returns (items consumed, status).
    """
    cap = adj.shape[1]
    w = window.shape[0]
    dist = np.empty(cap, np.float32)
    keep_idx = np.empty(cap, np.int32)
    new_adj = np.empty(cap, np.int32)
    new_len = np.empty(cap, np.float32)
    for j in range(start, hi - lo):
        ok = out_ok[j]
        calcs = out_calcs[j]
        if not ok:
            q = pairs[lo + j, 0]
            u = out_u[j]
            du = out_d[j]
            add = True
            if touched[u] == batch_tag:  # u gained edges earlier in this batch: re-check
                for e in range(deg[u]):
                    b = adj[u, e]
                    if b == q:
                        add = False
                        break
                    d = _distance(head, tail, q, b, span)
                    calcs += 1
                    dist[e] = d
                    if d < du:  # an edge added in this batch now occludes u→q
                        add = False
                        break
            else:
                for e in range(deg[u]):
                    dist[e] = occ_d[j, e]
            if add:
                kept = 0
                for e in range(deg[u]):
                    if not (dist[e] < lens[u, e]):  # q occludes u→b when d(q,b) < d(u,b)
                        keep_idx[kept] = e
                        kept += 1
                if kept + 1 > cap:
                    return j, _OVERFLOW  # caller widens the arrays and resumes at item j
                inserted = False
                out = 0
                for t in range(kept):
                    e = keep_idx[t]
                    if not inserted and du < lens[u, e]:
                        new_adj[out] = q
                        new_len[out] = du
                        out += 1
                        inserted = True
                    new_adj[out] = adj[u, e]
                    new_len[out] = lens[u, e]
                    out += 1
                if not inserted:
                    new_adj[out] = q
                    new_len[out] = du
                    out += 1
                for t in range(out):
                    adj[u, t] = new_adj[t]
                    lens[u, t] = new_len[t]
                deg[u] = out
                touched[u] = batch_tag
                state[3] += 1
        state[4] += calcs
        pos = state[0]
        if state[2] >= w:
            state[1] -= window[pos]
        window[pos] = 1 if ok else 0
        state[1] += window[pos]
        state[0] = (pos + 1) % w
        state[2] += 1
        if state[2] >= w and state[1] >= target_hits:
            return j + 1, _DONE
    return hi - lo, _EXHAUSTED

@_inline_jit
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

@_inline_jit
def _later(d_a, seq_a, d_b, seq_b):
    """Order of the result: distance, then discovery (the earlier found first)."""
    return d_a > d_b or (d_a == d_b and seq_a > seq_b)

@_inline_jit
def _place_from_root(heap_d, heap_seq, heap_v, size, d, seq, v):
    """Put ``(d, seq, v)`` at the root of the max-heap of ``size`` entries and sift it down."""
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _later(heap_d[child + 1], heap_seq[child + 1], heap_d[child], heap_seq[child]):
            child += 1
        if not _later(heap_d[child], heap_seq[child], d, seq):
            break
        heap_d[i], heap_seq[i], heap_v[i] = heap_d[child], heap_seq[child], heap_v[child]
        i = child
    heap_d[i], heap_seq[i], heap_v[i] = d, seq, v

@_inline_jit
def _keep_nearest(heap_d, heap_seq, heap_v, size, k, d, seq, v):
    """Add ``(d, seq, v)`` to the bounded max-heap of the ``k`` nearest found so far.

    The caller offers only a newcomer that belongs there (``size < k`` or
    ``d < heap_d[0]``; ``seq`` grows with every offer, so one tying the worst
    entry loses). Returns the new size.
    """
    if size == k:
        _place_from_root(heap_d, heap_seq, heap_v, size, d, seq, v)
        return size
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if not _later(d, seq, heap_d[parent], heap_seq[parent]):
            break
        heap_d[i], heap_seq[i], heap_v[i] = heap_d[parent], heap_seq[parent], heap_v[parent]
        i = parent
    heap_d[i], heap_seq[i], heap_v[i] = d, seq, v
    return size + 1

@_jit
def _backtrack_one(x, adj, deg, q, k, budget, stamp, tag, keys, verts, edges,
                   near_d, near_seq, near_v, out_idx, out_d):
    """FANNG Alg. 3 for query vertex ``q`` starting at ``q``; fills out rows.

    The ``k`` nearest vertices met are kept in a bounded heap as they are
    found (nearest first, ties to the earlier found). The queue push is
    written out here and the heap of the nearest is called only for a vertex
    that enters it: each call of a helper (inlined or not) costs an atomic
    reference count per array argument, a fifth of the search's time before.
    """
    keys[0], verts[0], edges[0] = np.float32(0.0), q, 0  # the queue: (distance, vertex, next edge)
    size = 1
    stamp[q] = tag
    n_near = 0
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
        if e == 0:  # first expansion of v: its neighbours' rows are read next
            _prefetch_rows(x, adj, deg, v)
        edges[0] = e + 1  # v stays in the queue with its next edge (same key)
        n = adj[v, e]
        if stamp[n] == tag:
            continue
        stamp[n] = tag
        d = _sqdist(x, n, q)
        if n_near < k or d < near_d[0]:
            n_near = _keep_nearest(near_d, near_seq, near_v, n_near, k, d, calcs, n)
        calcs += 1
        i = size  # push (d, n, edge 0): sift the hole up from the end
        while i > 0:
            parent = (i - 1) >> 1
            if keys[parent] <= d:
                break
            keys[i], verts[i], edges[i] = keys[parent], verts[parent], edges[parent]
            i = parent
        keys[i], verts[i], edges[i] = d, n, 0
        size += 1
    for j in range(n_near - 1, -1, -1):  # the worst entry goes last
        out_idx[j], out_d[j] = near_v[0], near_d[0]
        _place_from_root(near_d, near_seq, near_v, j, near_d[j], near_seq[j], near_v[j])
    for j in range(n_near, k):
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
        near_d = np.empty(k, np.float32)
        near_seq = np.empty(k, np.int64)
        near_v = np.empty(k, np.int64)
        total = 0
        for i in range(c * per, min(nq, (c + 1) * per)):
            total += _backtrack_one(x, adj, deg, queries[i], k, budget, stamp, i,
                                    keys, verts, edges, near_d, near_seq, near_v,
                                    out_idx[i], out_d[i])
        calcs[c] = total
    return out_idx, out_d, calcs


@dataclasses.dataclass
class FanngGraph:
    """A FANNG over ``embeddings`` and its build record.

    The graph is stored over the vertices in ``order`` (a locality order, see
    ``neighbors.tiled.locality_order``; position ``p`` holds sample ``order[p]``):
    ``internal_adjacency[p, :internal_degrees[p]]`` are the positions of the
    out-neighbours of position ``p``, sorted by squared length
    ``internal_edge_lengths``. ``internal_embeddings`` are the rows the graph was
    built and is searched on: ``embeddings[order] @ rotation`` (``rotation`` is
    the identity when the build did not use principal axes). ``adjacency``,
    ``edge_lengths``, ``degrees`` and :meth:`neighbours` give the same graph in
    sample ids.
    """

    embeddings: np.ndarray
    internal_embeddings: np.ndarray
    internal_adjacency: np.ndarray
    internal_edge_lengths: np.ndarray
    internal_degrees: np.ndarray
    order: np.ndarray
    rotation: np.ndarray
    traverse_adds: int
    success_rate: float
    target_success_rate: float
    distance_calculations: int
    build_seconds: float
    batch_size: int
    search_calibration: "BudgetCalibration | None" = None  # set by fanng_neighbours(target_recall=...)

    @property
    def reached_target(self):
        return self.success_rate >= self.target_success_rate

    @functools.cached_property
    def positions(self):
        """Inverse of ``order``: ``positions[i]`` is the position of sample ``i``."""
        inverse = np.empty_like(self.order)
        inverse[self.order] = np.arange(len(self.order))
        return inverse

    @functools.cached_property
    def adjacency(self):
        """``(N, width)`` out-neighbour sample ids of each sample, ``-1`` padded."""
        rows = self.internal_adjacency[self.positions]
        return np.where(rows >= 0, self.order[np.maximum(rows, 0)], -1).astype(np.int32)

    @property
    def edge_lengths(self):
        """Squared lengths matching :attr:`adjacency` (``inf`` padded)."""
        return self.internal_edge_lengths[self.positions]

    @property
    def degrees(self):
        return self.internal_degrees[self.positions]

    def neighbours(self, v):
        """Out-neighbours of sample ``v`` (shortest edge first)."""
        p = self.positions[v]
        return self.order[self.internal_adjacency[p, : self.internal_degrees[p]]].astype(np.int32)

    def search(self, k, budget=None, queries=None, num_threads=None):
        """Backtrack search from each query vertex (all by default); see :func:`fanng_search`."""
        return fanng_search(self, k, budget=budget, queries=queries, num_threads=num_threads)


@contextlib.contextmanager
def _threads(num_threads):
    """Run numba's parallel loops with ``num_threads`` threads (default: numba's setting)."""
    previous = numba.get_num_threads()
    wanted = previous if num_threads is None else int(num_threads)
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(previous)


def _as_float32_matrix(embeddings, name="embeddings"):
    x = np.ascontiguousarray(np.asarray(embeddings), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (n, dim) matrix, got shape {x.shape}.")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows, got {x.shape[0]}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf values.")
    return x


def _cache_aligned(a):
    """A C-contiguous copy of ``a`` that starts on a 64-byte cache-line boundary.

    A row of 64 float32 then spans exactly four cache lines (five when it
    straddles them, one of which the row prefetch misses); numpy only
    guarantees 16-byte alignment.
    """
    a = np.asarray(a)
    buffer = np.empty(a.nbytes + _CACHE_LINE, np.uint8)
    offset = -buffer.ctypes.data % _CACHE_LINE
    aligned = buffer[offset:offset + a.nbytes].view(a.dtype).reshape(a.shape)
    aligned[...] = a
    return aligned


def _random_pairs(rng, n, m):
    """``m`` traverse-add pairs ``(q, v)``: target ``q`` uniform, start ``v`` uniform among the others."""
    q = rng.integers(0, n, m)
    v = (q + 1 + rng.integers(0, n - 1, m)) % n
    return np.stack([q, v], axis=1).astype(np.int32)


def _distance_span(dim):
    """Coordinates per partial distance sum: ``_DISTANCE_SPAN`` for wide embeddings, else all of them."""
    return _DISTANCE_SPAN if dim >= _WIDE_DIM else dim


def principal_axes(x):
    """Orthogonal ``(D, D)`` float32 rotation onto the principal axes of ``x``, largest variance first.

    ``x @ rotation`` has the same pairwise distances as ``x`` (up to float32
    rounding) with the variance concentrated in the leading coordinates.
    """
    covariance = np.cov(x, rowvar=False, dtype=np.float64)
    _, vectors = np.linalg.eigh(np.atleast_2d(covariance))
    return np.ascontiguousarray(vectors[:, ::-1], dtype=np.float32)


def _pair_chunk_size(n, batch):
    """Pairs drawn per call of :func:`_random_pairs`: a multiple of ``batch`` (batches never straddle)."""
    return batch * -(-max(1024, min(n, 1 << 16)) // batch)


def build_fanng(embeddings, target_success_rate=0.98, success_window=1000,
                max_traverse_adds=None, seed=0, initial_degree_capacity=32,
                batch_size=None, num_threads=None, reorder=True, use_principal_axes=None):
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
        batch_size: traverse-add searches run in parallel on one frozen graph
            before their edges are merged in pair order (see the module
            docstring); ``1`` is the sequential FANNG Alg. 4. Default
            :func:`default_build_batch` ``(N)``. The graph depends on it and on
            ``seed``, not on the thread count.
        num_threads: numba threads for the batched searches (default: numba's).
        reorder: build over the vertices in ``tiled.locality_order`` (faster;
            the vertex ids of the random pairs then refer to that order).
        use_principal_axes: build on the embeddings rotated onto their
            :func:`principal_axes` (same distances up to rounding; the greedy
            search's distance sums then stop early far more often). Default:
            for ``D ≥ 128``.

    Returns:
        :class:`FanngGraph`.
    """
    if not 0.0 < target_success_rate <= 1.0:
        raise ValueError(f"target_success_rate must be in (0, 1], got {target_success_rate}.")
    if int(success_window) < 1:
        raise ValueError(f"success_window must be >= 1, got {success_window}.")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    start = time.perf_counter()
    samples = _as_float32_matrix(embeddings)
    n, dim = samples.shape
    order = locality_order(samples, seed=seed) if reorder else np.arange(n, dtype=np.int64)
    if use_principal_axes is None:
        use_principal_axes = dim >= _WIDE_DIM
    if use_principal_axes:
        rotation = principal_axes(samples)
        x = _cache_aligned(samples[order] @ rotation)
    else:
        rotation = np.eye(dim, dtype=np.float32)
        x = _cache_aligned(samples[order] if reorder else samples)
    # The build reads rows split in two: a compact head matrix that most greedy
    # distances never leave (it stays in the CPU cache) and the rest.
    span = _distance_span(dim)
    head = x if span == dim else _cache_aligned(x[:, :span])
    tail = _cache_aligned(x[:, span:])
    batch_size = default_build_batch(n) if batch_size is None else int(batch_size)
    window_size = int(min(success_window, n))
    max_adds = int(200 * n if max_traverse_adds is None else max_traverse_adds)
    target_hits = int(math.ceil(target_success_rate * window_size - 1e-9))
    batch = int(batch_size)
    cap = max(2, int(initial_degree_capacity))
    adj = np.full((n, cap), -1, np.int32)
    lens = np.full((n, cap), np.inf, np.float32)
    deg = np.zeros(n, np.int32)
    window = np.zeros(window_size, np.int64)
    state = np.zeros(5, np.int64)
    touched = np.full(n, -1, np.int64)
    out_u = np.empty(batch, np.int32)
    out_d = np.empty(batch, np.float32)
    out_ok = np.empty(batch, np.bool_)
    out_calcs = np.empty(batch, np.int64)
    occ_d = np.empty((batch, cap), np.float32)
    rng = np.random.default_rng(seed)
    chunk = _pair_chunk_size(n, batch)
    done = 0
    batches = 0
    status = _EXHAUSTED
    with _threads(num_threads) as threads:
        slots = threads if batch >= _MIN_PARALLEL_BATCH else 1  # small batches: thread start-up dominates
        while done < max_adds and status != _DONE:
            m = min(chunk, max_adds - done)
            pairs = _random_pairs(rng, n, m)
            for lo in range(0, m, batch):
                hi = min(m, lo + batch)
                if slots == 1:
                    _search_slot(head, tail, adj, lens, deg, pairs, lo, 0, hi - lo, span, out_u, out_d,
                                 out_ok, out_calcs, occ_d)
                else:
                    _search_batch(head, tail, adj, lens, deg, pairs, lo, hi, slots, span, out_u, out_d,
                                  out_ok, out_calcs, occ_d)
                used = 0
                while True:
                    used, status = _merge_batch(head, tail, adj, lens, deg, pairs, lo, hi, used, span,
                                                out_u, out_d, out_ok, out_calcs, occ_d, touched,
                                                batches, window, state, target_hits)
                    if status != _OVERFLOW:
                        break
                    cap *= 2
                    adj = np.concatenate([adj, np.full((n, cap - adj.shape[1]), -1, np.int32)], axis=1)
                    lens = np.concatenate([lens, np.full((n, cap - lens.shape[1]), np.inf, np.float32)],
                                          axis=1)
                batches += 1
                if occ_d.shape[1] < cap:
                    occ_d = np.empty((batch, cap), np.float32)
                if status == _DONE:
                    done += lo + used
                    break
            else:
                done += m
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
        embeddings=samples,
        internal_embeddings=x,
        internal_adjacency=np.ascontiguousarray(adj[:, :width]),
        internal_edge_lengths=np.ascontiguousarray(lens[:, :width]),
        internal_degrees=deg,
        order=order,
        rotation=rotation,
        batch_size=batch,
        traverse_adds=int(done),
        success_rate=rate,
        target_success_rate=float(target_success_rate),
        distance_calculations=int(state[4]),
        build_seconds=time.perf_counter() - start,
    )


def default_build_batch(n):
    """Default traverse-add batch for ``n`` vertices: ``min(4096, max(1, n // 16))``."""
    return int(min(4096, max(1, n // 16)))


def default_search_budget(k):
    """Default distance-calculation budget of the backtrack search for ``k`` neighbours."""
    return int(max(40 * k, 2 * k + 200))


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
    n = graph.internal_embeddings.shape[0]
    k = int(k)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} embeddings, got {k}.")
    budget = default_search_budget(k) if budget is None else int(budget)
    if budget < k:
        raise ValueError(f"search budget ({budget} distance calculations) must be >= k ({k}).")
    queries = np.arange(n, dtype=np.int64) if queries is None else np.asarray(queries, np.int64)
    if queries.ndim != 1 or (queries.size and (queries.min() < 0 or queries.max() >= n)):
        raise ValueError(f"queries must be a vector of vertex ids in [0, {n}).")
    # Queries run in memory order (consecutive queries explore overlapping, cached
    # neighbourhoods); each query's result does not depend on the order.
    positions = graph.positions[queries]
    run_order = np.argsort(positions, kind="stable")
    with _threads(num_threads) as threads:
        n_chunks = max(1, min(len(queries), 8 * threads))
        idx_run, dist_run, _ = _backtrack_all(graph.internal_embeddings, graph.internal_adjacency,
                                              graph.internal_degrees, positions[run_order], k,
                                              budget, n_chunks)
    idx = np.empty_like(idx_run)
    dist = np.empty_like(dist_run)
    idx[run_order] = idx_run
    dist[run_order] = dist_run
    return np.where(idx >= 0, graph.order[np.maximum(idx, 0)], -1), dist


@dataclasses.dataclass(frozen=True)
class BudgetCalibration:
    """The search budget chosen for a target recall@k, and the recall it reached.

    ``recall`` is measured on ``queries`` sampled vertices against the exact
    search; ``budgets_tried`` counts the sample searches the calibration ran.
    """

    k: int
    target_recall: float
    budget: int
    recall: float
    queries: int
    budgets_tried: int

    @property
    def reached(self):
        return self.recall >= self.target_recall


def _recall(found, exact):
    """Mean share of each row of ``exact`` found in the same row of ``found`` (``-1`` never matches)."""
    return float((found[:, :, None] == exact[:, None, :]).any(axis=2).mean())


def calibrate_search_budget(graph, k, target_recall, calibration_queries=1000, seed=0, num_threads=None):
    """The smallest search budget whose recall@k on sampled queries reaches ``target_recall``.

    Args:
        graph: a :class:`FanngGraph`.
        k: neighbours per query.
        target_recall: wanted recall@k in ``(0, 1]`` against the exact search.
        calibration_queries: vertices sampled (without replacement, with
            ``seed``) to measure the recall on; all of them when ``N`` is smaller.
        seed: seed of the sample.
        num_threads: numba threads of the searches.

    Returns:
        :class:`BudgetCalibration`. When even a budget of ``N − 1`` distance
        calculations falls short it holds that budget and its recall, and a
        ``RuntimeWarning`` names both.
    """
    n = graph.internal_embeddings.shape[0]
    k = int(k)
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} embeddings, got {k}.")
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}.")
    if int(calibration_queries) < 1:
        raise ValueError(f"calibration_queries must be >= 1, got {calibration_queries}.")
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=min(int(calibration_queries), n), replace=False))
    exact, _ = exact_knn(graph.embeddings[queries], k + 1, references=graph.embeddings,
                         metric="squared_euclidean", backend="numpy", num_threads=num_threads)
    exact = drop_self_matches(exact, exact, k, ids=queries)[0]
    tried = []

    def recall_with(budget):
        tried.append(budget)
        return _recall(fanng_search(graph, k, budget=budget, queries=queries, num_threads=num_threads)[0], exact)

    most = max(k, n - 1)  # the search never computes more distances than there are other vertices
    low, high = k - 1, min(max(k, default_search_budget(k)), most)  # low: a budget known to fall short
    reached = recall_with(high)
    while reached < target_recall and high < most:
        low, high = high, min(2 * high, most)
        reached = recall_with(high)
    if reached >= target_recall:
        while high - low > 1:  # recall never drops as the budget grows
            middle = (low + high) // 2
            recall = recall_with(middle)
            if recall >= target_recall:
                high, reached = middle, recall
            else:
                low = middle
    else:
        warnings.warn(
            f"FANNG search: recall@{k} {reached:.4f} on {len(queries)} sampled queries with the largest "
            f"budget ({high} distance calculations) is below target_recall={target_recall}.",
            RuntimeWarning,
            stacklevel=2,
        )
    return BudgetCalibration(k=k, target_recall=float(target_recall), budget=int(high), recall=reached,
                             queries=len(queries), budgets_tried=len(tried))


def fanng_neighbours(embeddings, k, budget=None, target_success_rate=0.98, success_window=1000,
                     max_traverse_adds=None, seed=0, num_threads=None, return_graph=False,
                     batch_size=None, reorder=True, use_principal_axes=None, target_recall=None,
                     calibration_queries=1000):
    """Each sample's ``k`` nearest neighbours via a fresh FANNG (Smart Mining Sec. 3.2.1).

    The search effort is ``budget`` distance calculations per query (default
    :func:`default_search_budget`), or, with ``target_recall``, the smallest
    budget that reaches that recall@k on ``calibration_queries`` sampled
    queries (:func:`calibrate_search_budget`; the result is logged and kept in
    the graph's ``search_calibration``). The other arguments are
    :func:`build_fanng`'s.

    Returns ``(indices, squared_distances)`` (and the :class:`FanngGraph` when
    ``return_graph``).
    """
    if budget is not None and target_recall is not None:
        raise ValueError("give either budget or target_recall, not both.")
    graph = build_fanng(embeddings, target_success_rate=target_success_rate,
                        success_window=success_window, max_traverse_adds=max_traverse_adds,
                        seed=seed, batch_size=batch_size, num_threads=num_threads,
                        reorder=reorder, use_principal_axes=use_principal_axes)
    if target_recall is not None:
        graph.search_calibration = calibrate_search_budget(graph, k, target_recall, calibration_queries,
                                                           seed=seed, num_threads=num_threads)
        budget = graph.search_calibration.budget
        _LOG.info("FANNG search budget %d for recall@%d %.4f (target %s, %d sampled queries)", budget, k,
                  graph.search_calibration.recall, target_recall, graph.search_calibration.queries)
    idx, dist = fanng_search(graph, k, budget=budget, num_threads=num_threads)
    return (idx, dist, graph) if return_graph else (idx, dist)
