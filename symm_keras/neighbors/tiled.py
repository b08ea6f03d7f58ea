"""Exact kNN on a CPU: BLAS tiles of the score matrix merged into per-query heaps (numba).

Used by :func:`symm_keras.neighbors.exact.exact_knn` on the host; imported only
there (and by FANNG for :func:`locality_order`), so nothing else needs numba.

faiss' exact search (``IndexFlatL2``/``IP``) does the same in C++: BLAS products
of query × reference tiles that stay in cache, each merged into ``k``-element
heaps at once. When the queries are the references, the score matrix is
symmetric (``2 x_i·x_j`` up to the per-column bias), so only the tiles on and
above the diagonal are multiplied and each off-diagonal tile updates the heaps
of its rows and of its columns: half the multiply-adds of a full search.

Threads: each worker runs single-threaded BLAS and the compiled merges (which
release the GIL) on its own row strips. Alternating multi-threaded BLAS with a
second thread pool for the merges was 2–3× slower on 2 cores: OpenBLAS'
idle workers spin for a while after each product and steal the merge's cores.
"""

import concurrent.futures
import contextlib
import os
import threading

import numpy as np

try:
    import numba
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "symm_keras.neighbors.tiled needs numba (`pip install numba`, a symm_keras dependency); "
        "exact_knn falls back to numpy score blocks without it."
    ) from error

from symm_keras.neighbors.exact import check_positive_int, _row_squared_norms, _unit_rows

HOST_TILE = 1024  # tile edge: a 1024 × 1024 float32 tile (4 MiB) stays in cache
_NO_INDEX = np.iinfo(np.int64).max  # an empty heap slot loses every tie
_STRIPE = 128  # columns tested at once (branch-free) before the exact per-entry merge

_jit = numba.njit(cache=True, nogil=True)

@_jit
def _sift_down(heap_scores, heap_indices, size, score, index):
    """Put ``(score, index)`` at the root of a heap of ``size`` and sift it down.

    The root holds the worst kept candidate: the lowest score, and among
    equal scores the highest index (ties go to the lower index).
    """
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and (
            heap_scores[right] < heap_scores[child]
            or (heap_scores[right] == heap_scores[child] and heap_indices[right] > heap_indices[child])
        ):
            child = right
        if heap_scores[child] < score or (heap_scores[child] == score and heap_indices[child] > index):
            heap_scores[pos] = heap_scores[child]
            heap_indices[pos] = heap_indices[child]
            pos = child
        else:
            break
    heap_scores[pos] = score
    heap_indices[pos] = index

@_jit
def _row_stripe_may_enter(values, bias, worst_score):
    """Branch-free (vectorised) test: could any ``values[c] − bias[c]`` enter a heap with this worst score?"""
    hit = False
    for c in range(values.shape[0]):
        hit |= (values[c] - bias[c]) >= worst_score
    return hit

@_jit
def _stripe_may_enter(values, bias, worst_score, row_bias, column_worst_scores):
    """The same test for a row heap and, transposed, the column heaps of the stripe."""
    hit = False
    for c in range(values.shape[0]):
        value = values[c]
        hit |= ((value - bias[c]) >= worst_score) | ((value - row_bias) >= column_worst_scores[c])
    return hit

@_jit
def _merge_tile_rows(gram, bias, ids, row_offset, column_offset, exclude_self, heap_scores, heap_indices):
    """Offer ``s = gram[r, c] − bias[j]`` (``j = column_offset + c``) to the heap of query ``row_offset + r``.

    The heap stores ``ids[j]``, the reference's index in the caller's
    order (ties go to the lower id); ``exclude_self`` skips ``j`` equal to
    the query's own position. Stripes of :data:`_STRIPE` columns are first
    tested branch-free; only stripes that could change the heap are merged
    entry by entry.
    """
    rows, columns = gram.shape
    k = heap_scores.shape[1]
    column_bias = bias[column_offset : column_offset + columns]
    for r in range(rows):
        query = row_offset + r
        row_scores = heap_scores[query]
        row_indices = heap_indices[query]
        values = gram[r]
        for first in range(0, columns, _STRIPE):
            last = min(columns, first + _STRIPE)
            if not _row_stripe_may_enter(values[first:last], column_bias[first:last], row_scores[0]):
                continue
            for c in range(first, last):
                score = values[c] - column_bias[c]
                candidate = ids[column_offset + c]
                if score < row_scores[0] or (score == row_scores[0] and candidate > row_indices[0]):
                    continue
                if exclude_self and column_offset + c == query:
                    continue
                _sift_down(row_scores, row_indices, k, score, candidate)

@_jit
def _merge_tile_both(gram, bias, ids, row_offset, column_offset, heap_scores, heap_indices):
    """One pass over an off-diagonal tile of a self-search (``gram[r, c] = 2 x_i·x_j``).

    Offers ``gram[r, c] − bias[j]`` to the heap of ``i = row_offset + r``
    and ``gram[r, c] − bias[i]`` to the heap of ``j = column_offset + c``;
    the heaps store ``ids`` (see :func:`_merge_tile_rows`); the columns'
    worst entries are kept in a local array, read in order.
    """
    rows, columns = gram.shape
    k = heap_scores.shape[1]
    column_bias = bias[column_offset : column_offset + columns]
    column_worst_scores = np.empty(columns, dtype=heap_scores.dtype)
    column_worst_indices = np.empty(columns, dtype=np.int64)
    for c in range(columns):
        column_worst_scores[c] = heap_scores[column_offset + c, 0]
        column_worst_indices[c] = heap_indices[column_offset + c, 0]
    for r in range(rows):
        row = row_offset + r
        row_id = ids[row]
        row_scores = heap_scores[row]
        row_indices = heap_indices[row]
        row_bias = bias[row]
        values = gram[r]
        for first in range(0, columns, _STRIPE):
            last = min(columns, first + _STRIPE)
            if not _stripe_may_enter(
                values[first:last], column_bias[first:last], row_scores[0], row_bias, column_worst_scores[first:last]
            ):
                continue
            for c in range(first, last):
                column = column_offset + c
                column_id = ids[column]
                score = values[c] - column_bias[c]
                if score > row_scores[0] or (score == row_scores[0] and column_id < row_indices[0]):
                    _sift_down(row_scores, row_indices, k, score, column_id)
                score = values[c] - row_bias
                if score > column_worst_scores[c] or (score == column_worst_scores[c] and row_id < column_worst_indices[c]):
                    _sift_down(heap_scores[column], heap_indices[column], k, score, row_id)
                    column_worst_scores[c] = heap_scores[column, 0]
                    column_worst_indices[c] = heap_indices[column, 0]

@_jit
def _sort_heaps(heap_scores, heap_indices, start, stop):
    """Heapsort rows ``start:stop`` in place: best first (score descending, lower index on ties)."""
    k = heap_scores.shape[1]
    for q in range(start, stop):
        row_scores = heap_scores[q]
        row_indices = heap_indices[q]
        for end in range(k - 1, 0, -1):
            score = row_scores[end]
            index = row_indices[end]
            row_scores[end] = row_scores[0]
            row_indices[end] = row_indices[0]
            _sift_down(row_scores, row_indices, end, score, index)


def host_threads():
    """Worker threads of :func:`tiled_knn`: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


_BLAS_CONTROLLER = []  # one threadpoolctl controller, built on first use (it scans the loaded libraries)


@contextlib.contextmanager
def _single_threaded_blas():
    """BLAS limited to one thread inside the block (the host path's workers are the threads)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    with _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas"):
        yield


def tiled_knn(queries, k, references=None, metric="cosine", tile=None, num_threads=None):
    """Exact kNN on the host: BLAS tile products merged into per-query heaps (needs numba).

    Scores as in :func:`score_blocks`: ``s = q̂·ŷ`` (cosine) or
    ``s = 2 q·y − ‖y‖²`` (euclidean; ``2q`` is formed once, an exact scaling).
    Each ``tile × tile`` block of scores (default :data:`HOST_TILE`) is one
    BLAS product into a reused buffer, merged at once into ``k``-element heaps
    by compiled loops, so no score leaves the cache and no row is sorted. With
    ``references=None`` only the tiles on and above the diagonal are computed
    (the scores are symmetric up to the bias) and query ``i`` is excluded from
    its own heap by index; the points are then processed in
    :func:`locality_order` and the diagonal tiles first, so the heaps hold
    near-final entries early and most later stripes are rejected by one
    branch-free test. A candidate enters a heap when it beats the heap's worst
    entry by score or ties it with a lower index (heaps store the caller's
    indices), so the result is the order of a stable sort, score descending
    and lower index first, whatever the tile size, thread count or order.

    Args:
        queries, references: checked ``(n, d)`` / ``(m, d)`` float arrays of
            one dtype (see :func:`exact_knn`); ``references=None``: the queries.
        k: neighbours per query (≤ gallery size).
        metric: ``"cosine"`` or ``"euclidean"`` (scores for both Euclidean metrics).
        tile: tile edge in rows/columns.
        num_threads: worker threads (default :func:`host_threads`), each with
            single-threaded BLAS (process-wide while the search runs); row
            strips are handed out in order (largest first), and a lock per row
            block serialises the merges into one block's heaps.

    Returns:
        ``(indices int64, scores)``, both ``(n, k)``, nearest first; scores are
        the ``s`` above in the input precision (not yet distances).
    """
    tile = HOST_TILE if tile is None else check_positive_int(tile, "tile")
    num_threads = host_threads() if num_threads is None else check_positive_int(num_threads, "num_threads")
    symmetric = references is None
    if metric == "cosine":
        queries = _unit_rows(queries)
        references = queries if symmetric else _unit_rows(references)
        bias = np.zeros(references.shape[0], dtype=queries.dtype)
        scaled = queries
    else:
        references = queries if symmetric else references
        bias = _row_squared_norms(references)
        scaled = queries * queries.dtype.type(2)
    with _single_threaded_blas():
        return _tiled_search(scaled, references, bias, k, symmetric, tile, num_threads)


def _tiled_search(scaled, references, bias, k, symmetric, tile, num_threads):
    num_queries, num_references = scaled.shape[0], references.shape[0]
    ids = np.arange(num_references, dtype=np.int64)
    if symmetric and num_queries > tile:
        # Neighbours close in the processing order: heaps fill with good
        # entries on the first (diagonal) tiles, and later tiles mostly fail
        # the stripe test. Any order gives the same result (ties use ids).
        ids = locality_order(references)
        scaled, references, bias = scaled[ids], references[ids], bias[ids]
    scaled = np.ascontiguousarray(scaled)
    references = np.ascontiguousarray(references)
    heap_scores = np.full((num_queries, k), -np.inf, dtype=scaled.dtype)
    heap_indices = np.full((num_queries, k), _NO_INDEX, dtype=np.int64)
    locks = [threading.Lock() for _ in range(0, num_queries, tile)]

    def tiles(row_start, column_starts):
        row_stop = min(row_start + tile, num_queries)
        buffer = np.empty((row_stop - row_start) * min(tile, num_references), dtype=scaled.dtype)
        for column_start in column_starts:
            column_stop = min(column_start + tile, num_references)
            gram = buffer[: (row_stop - row_start) * (column_stop - column_start)]
            gram = gram.reshape(row_stop - row_start, column_stop - column_start)
            np.matmul(scaled[row_start:row_stop], references[column_start:column_stop].T, out=gram)
            if symmetric and column_start != row_start:
                # Locks always taken in ascending block order: no deadlock.
                with locks[row_start // tile], locks[column_start // tile]:
                    _merge_tile_both(gram, bias, ids, row_start, column_start, heap_scores, heap_indices)
            else:
                with locks[row_start // tile]:
                    _merge_tile_rows(gram, bias, ids, row_start, column_start, symmetric, heap_scores, heap_indices)

    if symmetric:  # the diagonal tiles first, then each strip's tiles away from the diagonal
        phases = [lambda start: tiles(start, [start]), lambda start: tiles(start, range(start + tile, num_queries, tile))]
    else:
        phases = [lambda start: tiles(start, range(0, num_references, tile))]
    phases.append(lambda start: _sort_heaps(heap_scores, heap_indices, start, min(start + tile, num_queries)))
    starts = range(0, num_queries, tile)
    if num_threads == 1:
        for phase in phases:
            for start in starts:
                phase(start)
    else:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            for phase in phases:
                list(pool.map(phase, starts))
    if symmetric and num_queries > tile:  # heaps are in processing order: back to the caller's
        heap_scores[ids], heap_indices[ids] = heap_scores.copy(), heap_indices.copy()
    return heap_indices, heap_scores


def locality_order(points, cell_size=64, seed=0):
    """A permutation that puts nearby points close together (for :func:`tiled_knn`).

    Points go to the Voronoi cell of the nearest of ``n // cell_size`` seed
    points drawn without replacement (one nearest-seed search, BLAS); cells are
    ordered along the seeds' first principal direction, points by cell.
    Deterministic for a seed; the cost is ``n · (n / cell_size) · d``
    multiply-adds, a ``1 / (cell_size / 2)`` share of the kNN search itself.
    """
    n = points.shape[0]
    num_seeds = max(1, n // cell_size)
    seeds = points[np.random.default_rng(seed).choice(n, num_seeds, replace=False)]
    seed_bias = _row_squared_norms(seeds)
    cells = np.empty(n, dtype=np.int64)
    for start in range(0, n, 4096):
        scores = points[start : start + 4096] @ seeds.T
        scores *= 2
        scores -= seed_bias
        cells[start : start + 4096] = scores.argmax(axis=1)
    centred = seeds - seeds.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0] if num_seeds > 1 else np.zeros(points.shape[1])
    cell_rank = np.argsort(np.argsort(centred @ direction, kind="stable"), kind="stable")
    return np.argsort(cell_rank[cells], kind="stable").astype(np.int64)
