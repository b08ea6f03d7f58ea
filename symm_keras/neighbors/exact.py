"""Exact k-nearest-neighbour search in row blocks: never the full n×n matrix.

For a block of queries ``Q_b`` (``b`` rows) the scores against every reference
are one matrix product, and only the ``k`` best per row are kept:

* cosine: ``s(q, y) = q̂ · ŷ`` on L2-normalised rows (larger = closer);
* euclidean: ``s(q, y) = 2 q·y − ‖y‖²`` which orders references exactly as
  ``−‖q − y‖²`` (``‖q‖²`` is constant along a row); reported scores are the
  distances ``‖q − y‖``.

When the references are the queries themselves (``references=None``), query
``i`` is removed from its own list **by index** (its score is set to ``−inf``
before the top-k), so duplicates or ties can never make another item, or the
query itself, be dropped in its place. Ties between references are broken by
the lower index on every path (TensorFlow's and JAX's ``top_k`` guarantee
this; the numpy path enforces it).

Two paths compute the same lists:

* on a GPU/TPU (and ``backend="keras"``), one compiled call per ``b × m``
  score block on the active Keras backend (XLA through ``jax.jit`` or
  ``tf.function``): product, self mask and the two-stage :func:`top_k`, the
  results kept on the device until the last block (peak extra memory about
  two blocks, ``block_size`` rows, by default near 128 MiB each, plus the
  ``n × k`` result);
* on a CPU (``backend="numpy"``) with numba and ``k ≤ 256``,
  :func:`tiled_knn`: BLAS products of ``tile × tile`` blocks merged at once
  into per-query heaps, and for a self-search only the tiles on and above the
  diagonal (peak extra memory one 4 MiB tile per thread, the heaps and a
  reordered copy of the embeddings). Otherwise numpy score blocks and the
  chunked :func:`top_k`.

:func:`score_blocks` and :func:`top_k` stay public for callers that need the
scores themselves (retrieval ranks every item, not only the ``k`` nearest).
"""

import concurrent.futures
import contextlib
import os
import threading

import numpy as np
from keras import ops

try:  # numba compiles the host path's heap merges; without it the blocked numpy top-k is used.
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None

from symm_keras.evaluation.inputs import check_embeddings, check_metric
from symm_keras.ops.distances import l2_normalize

BACKENDS = ("auto", "keras", "numpy")
_BLOCK_ELEMENTS = 1 << 25  # 32 Mi scores = 128 MiB of float32 per block


def default_block_size(num_queries, num_references):
    """Rows per block so that one ``rows × num_references`` block holds ≤ 2²⁵ scores."""
    return int(max(1, min(num_queries, _BLOCK_ELEMENTS // max(1, num_references))))


def accelerator_present():
    """True when the active Keras backend sees a GPU/TPU."""
    import keras

    try:
        devices = keras.distribution.list_devices()
    except Exception:  # a backend without device listing: assume its own device is worth using
        return True
    return any(not str(device).lower().startswith("cpu") for device in devices)


def resolve_backend(backend):
    """Check ``backend``; ``"auto"`` becomes ``"keras"`` on a GPU/TPU and ``"numpy"`` on CPU.

    On CPU, numpy's BLAS with a host top-k (:func:`tiled_knn`, or the chunked
    numpy top-k) beats the Keras backends' block search (TensorFlow's eager
    matmul + ``top_k`` by about 2.4× at SOP scale, docs/evaluation.md; the
    compiled block search is still slower than :func:`tiled_knn`, which
    computes half the products, docs/smart_mining.md).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "auto":
        return "keras" if accelerator_present() else "numpy"
    return backend


def _check_k(k, num_queries, num_references, exclude_self):
    gallery = num_references - 1 if exclude_self else num_references
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if k > gallery:
        what = "the other items (query excluded)" if exclude_self else "the references"
        raise ValueError(f"k={k} is larger than the gallery: {gallery} item(s) in {what}.")
    return int(k)


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _prepare(queries, references, metric):
    queries = check_embeddings(queries, "queries")
    if references is not None:
        references = check_embeddings(references, "references")
        if references.shape[1] != queries.shape[1]:
            raise ValueError(
                f"queries have dimension {queries.shape[1]} but references have {references.shape[1]}."
            )
        if references.dtype != queries.dtype:
            references = references.astype(np.float32)
            queries = queries.astype(np.float32)
    return queries, references, check_metric(metric)


def _numpy_top_k(scores, k):
    """Row-wise top-k of a 2-D array, score descending, ties to the lower index."""
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        kth = part_scores.min(axis=1, keepdims=True)
        # A tie straddling position k: argpartition may have kept a higher index.
        ties_kept = np.count_nonzero(part_scores == kth, axis=1)
        ties_all = np.count_nonzero(scores == kth, axis=1)
        for row in np.flatnonzero(ties_all != ties_kept):
            order = np.argsort(-scores[row], kind="stable")[:k]
            part[row] = order
            part_scores[row] = scores[row, order]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
        part_scores = scores.copy()
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def _numpy_score_blocks(queries, references, metric, block_size, mask_self):
    exclude_self = references is None
    if metric == "cosine":
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        references = queries if exclude_self else (
            references / np.maximum(np.linalg.norm(references, axis=1, keepdims=True), 1e-12)
        )
    elif exclude_self:
        references = queries
    ref_t = np.ascontiguousarray(references.T)
    ref_sq = np.einsum("ij,ij->i", references, references) if metric == "euclidean" else None
    for start in range(0, queries.shape[0], block_size):
        stop = min(start + block_size, queries.shape[0])
        block = queries[start:stop]
        scores = block @ ref_t
        if metric == "euclidean":
            scores *= 2.0
            scores -= ref_sq
        if exclude_self and mask_self:
            rows = np.arange(stop - start)
            scores[rows, start + rows] = -np.inf
        yield start, stop, block, scores


def _device_operands(queries, references, metric):
    """``(q, rᵀ, ‖r‖²)`` on the backend's device: unit rows for cosine, the bias row for euclidean (else None)."""
    q = ops.convert_to_tensor(queries)
    r = q if references is None else ops.convert_to_tensor(references)
    if metric == "cosine":
        q = l2_normalize(q)
        r = q if references is None else l2_normalize(r)
    bias = ops.expand_dims(ops.sum(ops.square(r), axis=1), 0) if metric == "euclidean" else None
    return q, ops.transpose(r), bias


def _keras_score_blocks(queries, references, metric, block_size, mask_self):
    exclude_self = references is None
    q, ref_t, ref_sq = _device_operands(queries, references, metric)
    num_queries = queries.shape[0]
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        block = q[start:stop]
        scores = ops.matmul(block, ref_t)
        if metric == "euclidean":
            scores = 2.0 * scores - ref_sq
        if exclude_self and mask_self:
            rows = ops.arange(stop - start, dtype="int32")
            self_positions = ops.stack([rows, rows + start], axis=1)
            scores = ops.scatter_update(
                scores, self_positions, ops.full((stop - start,), float("-inf"), dtype=scores.dtype)
            )
        yield start, stop, block, scores


def score_blocks(queries, references=None, metric="cosine", block_size=None, backend="auto", mask_self=True):
    """Yield ``(start, stop, block_queries, scores)``, one ``b × m`` score block at a time.

    ``scores[i, j]`` orders reference ``j`` for query ``start + i`` (larger =
    closer): the cosine similarity, or ``2 q·y − ‖y‖²`` for ``"euclidean"``.
    With ``references=None`` the queries are the references and each query's
    own score is ``−inf`` (left as computed with ``mask_self=False``, for
    callers that discount the query themselves). Tensors of the active Keras backend for
    ``backend="keras"``, numpy arrays for ``"numpy"``.
    """
    backend = resolve_backend(backend)
    queries, references, metric = _prepare(queries, references, metric)
    num_references = queries.shape[0] if references is None else references.shape[0]
    if block_size is None:
        block_size = default_block_size(queries.shape[0], num_references)
    _check_positive_int(block_size, "block_size")
    blocks = _keras_score_blocks if backend == "keras" else _numpy_score_blocks
    return blocks(queries, references, metric, int(block_size), mask_self)


def _chunk_candidates_numpy(scores, k, chunk):
    """Columns (ascending) of the ``k`` chunks of ``chunk`` columns with the largest maxima."""
    rows, n = scores.shape
    whole = n - n % chunk
    chunk_max = scores[:, :whole].reshape(rows, whole // chunk, chunk).max(axis=2)
    if whole < n:
        chunk_max = np.concatenate([chunk_max, scores[:, whole:].max(axis=1, keepdims=True)], axis=1)
    chunks = np.sort(_numpy_top_k(chunk_max, k)[0], axis=1)
    return (chunks[:, :, None] * chunk + np.arange(chunk)).reshape(rows, k * chunk)


def top_k(scores, k, backend="keras", chunk=64):
    """``(indices, values)`` of the ``k`` largest scores per row, ties to the lower index.

    A small ``k`` (``4·k·chunk ≤`` row length) is done in two exact stages:
    the maxima of consecutive ``chunk``-column chunks, the ``k`` best chunks,
    then the top-k among their ``k·chunk`` columns (on the host about 10×
    faster than ``argpartition`` on a whole row; on a device it replaces a
    sort of the whole row by one max-reduction). Any top-k element lies in one
    of those chunks: each chunk ranked ahead of its chunk holds an element
    ranked ahead of it (larger score, or equal score and lower index), and
    there are fewer than ``k``. ``backend="keras"`` runs on the active Keras
    backend (``ops.top_k`` breaks ties to the lower index), ``"numpy"`` on the host.
    """
    if backend == "keras":
        return _keras_top_k(scores, k, chunk)
    n = scores.shape[1]
    if chunk <= 1 or 4 * k * chunk > n:
        return _numpy_top_k(scores, k)
    columns = _chunk_candidates_numpy(scores, k, chunk)
    candidates = np.where(columns < n, np.take_along_axis(scores, np.minimum(columns, n - 1), axis=1), -np.inf)
    positions, values = _numpy_top_k(candidates, k)
    return np.take_along_axis(columns, positions, axis=1), values


def _keras_top_k(scores, k, chunk):
    rows, n = scores.shape
    if chunk <= 1 or 4 * k * chunk > n:
        values, indices = ops.top_k(scores, k, sorted=True)
        return indices, values
    chunks = -(-n // chunk)
    padded = ops.pad(scores, [[0, 0], [0, chunks * chunk - n]], constant_values=float("-inf"))
    chunk_max = ops.max(ops.reshape(padded, (rows, chunks, chunk)), axis=2)
    _, best_chunks = ops.top_k(chunk_max, k, sorted=True)
    best_chunks = ops.sort(best_chunks, axis=1)  # candidate columns ascending: ties keep the lower index
    columns = ops.reshape(ops.expand_dims(best_chunks * chunk, 2) + ops.arange(chunk, dtype=best_chunks.dtype),
                          (rows, k * chunk))
    values, positions = ops.top_k(ops.take_along_axis(padded, columns, axis=1), k, sorted=True)
    return ops.take_along_axis(columns, positions, axis=1), values


# --- Device path: one compiled search per block of queries ----------------------------------
#
# Each block is one call of a compiled function (jax.jit / tf.function with XLA):
# product, self mask, two-stage top-k and distances fuse into a few kernels, and
# with the queries padded to whole blocks every block has the same shapes, so it
# compiles once per (n, d, k). Results stay on the device until the last block.
# On JAX the products run in full float32 (its GPU default is TF32, which can
# swap near neighbours); TensorFlow's TF32 switch is process-wide
# (``tf.config.experimental.enable_tensor_float_32_execution``) and left to the caller.
# Eager per-op dispatch with a host copy per block took 1.07 s at 59,551 × 64
# on an H100 (docs/gpu.md).

_DEVICE_SEARCHES = {}


def _device_block_search(queries, start, references_t, bias, block_size, k, exclude_self, chunk):
    block = ops.slice(queries, [start, 0], [block_size, queries.shape[1]])
    scores = ops.matmul(block, references_t)
    if bias is not None:  # euclidean: 2 q·y − ‖y‖²
        scores = 2.0 * scores - bias
    if exclude_self:
        rows = ops.expand_dims(ops.arange(block_size, dtype="int32") + start, 1)
        columns = ops.expand_dims(ops.arange(scores.shape[1], dtype="int32"), 0)
        scores = ops.where(rows == columns, float("-inf"), scores)
    indices, best = _keras_top_k(scores, k, chunk)
    if bias is not None:
        best = ops.sqrt(ops.maximum(ops.sum(ops.square(block), axis=1, keepdims=True) - best, 0.0))
    return indices, best


def _device_search():
    """:func:`_device_block_search` compiled for the active Keras backend (eager on others)."""
    import keras

    backend = keras.backend.backend()
    if backend not in _DEVICE_SEARCHES:
        search = _device_block_search
        if backend == "jax":
            import jax

            def full_precision_search(*args, **kwargs):  # JAX's GPU default for float32 is TF32
                with jax.default_matmul_precision("highest"):
                    return _device_block_search(*args, **kwargs)

            search = jax.jit(full_precision_search, static_argnames=("block_size", "k", "exclude_self", "chunk"))
        elif backend == "tensorflow":
            import tensorflow as tf

            search = tf.function(search, jit_compile=True)  # static shapes: one trace per shape
        _DEVICE_SEARCHES[backend] = search
    return _DEVICE_SEARCHES[backend]


def _device_knn_blocks(queries, references, k, metric, block_size, chunk=64):
    """Yield ``(start, stop, indices, scores)`` as backend tensors, one compiled call per block."""
    exclude_self = references is None
    q, references_t, bias = _device_operands(queries, references, metric)
    num_queries = queries.shape[0]
    padding = -num_queries % block_size
    if padding:
        q = ops.pad(q, [[0, padding], [0, 0]])
    search = _device_search()
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        indices, best = search(q, ops.convert_to_tensor(start, "int32"), references_t, bias,
                               block_size=block_size, k=k, exclude_self=exclude_self, chunk=chunk)
        if stop - start < block_size:
            indices, best = indices[: stop - start], best[: stop - start]
        yield start, stop, indices, best


# --- Host path: tiles of the score matrix merged into per-query heaps (numba) ---------------
#
# faiss' exact search (``IndexFlatL2``/``IP``) does the same in C++: BLAS products
# of query × reference tiles that stay in cache, each merged into ``k``-element
# heaps at once. When the queries are the references, the score matrix is
# symmetric (``2 x_i·x_j`` up to the per-column bias), so only the tiles on and
# above the diagonal are multiplied and each off-diagonal tile updates the heaps
# of its rows and of its columns: half the multiply-adds of a full search.
#
# Threads: each worker runs single-threaded BLAS and the compiled merges (which
# release the GIL) on its own row strips. Alternating multi-threaded BLAS with a
# second thread pool for the merges was 2–3× slower on 2 cores: OpenBLAS'
# idle workers spin for a while after each product and steal the merge's cores.

HOST_TILE = 1024  # tile edge: a 1024 × 1024 float32 tile (4 MiB) stays in cache
_NO_INDEX = np.iinfo(np.int64).max  # an empty heap slot loses every tie
_STRIPE = 128  # columns tested at once (branch-free) before the exact per-entry merge
TILED_MAX_K = 256  # larger k: numpy blocks + chunked top-k (see uses_tiled_host_path)


if numba is not None:
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


def _unit_rows(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), x.dtype.type(1e-12))


def _row_squared_norms(x):
    return np.einsum("ij,ij->i", x, x)


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
        metric: ``"cosine"`` or ``"euclidean"``.
        tile: tile edge in rows/columns.
        num_threads: worker threads (default :func:`host_threads`), each with
            single-threaded BLAS (process-wide while the search runs); row
            strips are handed out in order (largest first), and a lock per row
            block serialises the merges into one block's heaps.

    Returns:
        ``(indices int64, scores)``, both ``(n, k)``, nearest first; scores are
        the ``s`` above in the input precision (not yet distances).
    """
    if numba is None:
        raise ImportError("tiled_knn needs numba (`pip install numba`).")
    tile = HOST_TILE if tile is None else _check_positive_int(tile, "tile")
    num_threads = host_threads() if num_threads is None else _check_positive_int(num_threads, "num_threads")
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


def uses_tiled_host_path(backend, k=1):
    """True when ``exact_knn``/``knn_blocks`` with ``backend`` and ``k`` run :func:`tiled_knn`.

    That is on the host (``"numpy"``) with numba and ``k ≤`` :data:`TILED_MAX_K`:
    a heap insertion costs ``O(log k)`` and about ``k·(1 + ln(n/k))`` of them
    happen per query, so for large ``k`` the numpy blocks with the chunked
    top-k are faster (15,000 × 128 self-search: tiled 1.9 / 6.0 / 24.4 s at
    k = 100 / 300 / 1001, numpy blocks 6.5 / 8.4 / 11.7 s).
    """
    return resolve_backend(backend) == "numpy" and numba is not None and k <= TILED_MAX_K


def _checked_arguments(queries, k, references, metric, block_size):
    queries = check_embeddings(queries, "queries")
    num_references = queries.shape[0] if references is None else np.shape(references)[0]
    k = _check_k(k, queries.shape[0], num_references, references is None)
    metric = check_metric(metric)
    if block_size is not None:
        block_size = _check_positive_int(block_size, "block_size")
    return queries, k, metric, block_size


def _host_knn(queries, references, k, metric, block_size, num_threads=None):
    queries, references, metric = _prepare(queries, references, metric)
    indices, best = tiled_knn(queries, k, references=references, metric=metric, tile=block_size, num_threads=num_threads)
    if metric == "euclidean":
        best = _distances_from_scores(_row_squared_norms(queries), best)
    return indices, best


def knn_blocks(queries, k, references=None, metric="cosine", block_size=None, backend="auto"):
    """Yield ``(start, stop, indices, scores)`` for consecutive blocks of queries.

    Args:
        queries: ``(n, d)`` embeddings.
        k: neighbours per query.
        references: ``(m, d)`` gallery; ``None`` searches ``queries`` against
            themselves and excludes each query from its own list by index.
        metric: ``"cosine"`` (scores are cosine similarities) or
            ``"euclidean"`` (scores are distances).
        block_size: queries per block; on the tiled host path (see
            :func:`uses_tiled_host_path`) also the tile edge of :func:`tiled_knn` (default
            :data:`HOST_TILE`), otherwise rows per score block (default from
            :func:`default_block_size`).
        backend: ``"keras"`` (active Keras backend and its device; yields
            backend tensors), ``"numpy"`` (host BLAS; yields numpy arrays) or
            ``"auto"`` (keras on a GPU/TPU, numpy on CPU; see :func:`resolve_backend`).

    ``indices[i]`` are the references of query ``start + i``, nearest first.
    On the host path a block is final only once every tile is merged, so the
    whole ``(n, k)`` result is computed before the first block is yielded.
    """
    backend = resolve_backend(backend)
    queries, k, metric, block_size = _checked_arguments(queries, k, references, metric, block_size)
    if uses_tiled_host_path(backend, k):
        return _slices(*_host_knn(queries, references, k, metric, block_size), block_size or HOST_TILE)
    return _blocks(queries, references, k, metric, block_size, backend)


def _blocks(queries, references, k, metric, block_size, backend):
    if backend == "keras":
        queries, references, metric = _prepare(queries, references, metric)
        num_references = queries.shape[0] if references is None else references.shape[0]
        block_size = block_size or default_block_size(queries.shape[0], num_references)
        return _device_knn_blocks(queries, references, k, metric, block_size)
    return _host_top_k_blocks(score_blocks(queries, references, metric=metric, block_size=block_size,
                                           backend="numpy"), k, metric)


def _slices(indices, scores, step):
    for start in range(0, indices.shape[0], step):
        stop = min(start + step, indices.shape[0])
        yield start, stop, indices[start:stop], scores[start:stop]


def _distances_from_scores(query_squared_norms, scores):
    """``‖q − y‖ = sqrt(‖q‖² − (2 q·y − ‖y‖²))``, clipped at 0 against rounding."""
    distances = query_squared_norms[:, None] - scores
    np.maximum(distances, 0.0, out=distances)
    return np.sqrt(distances, out=distances)


def _host_top_k_blocks(blocks, k, metric):
    for start, stop, block, scores in blocks:
        indices, best = top_k(scores, k, "numpy")
        if metric == "euclidean":
            best = _distances_from_scores(_row_squared_norms(block), best)
        yield start, stop, indices, best


def exact_knn(queries, k, references=None, metric="cosine", block_size=None, backend="auto", num_threads=None):
    """Exact kNN of every query; returns numpy arrays.

    On a CPU (``backend="numpy"``, or ``"auto"`` without an accelerator) with
    numba and ``k ≤`` :data:`TILED_MAX_K` this is :func:`tiled_knn` (faster
    than faiss' exact search; see docs/smart_mining.md), with ``num_threads``
    workers (default: every CPU this process may use); otherwise score
    blocks + :func:`top_k`.

    Returns:
        ``(indices, scores)``, both ``(n, k)``: neighbour indices nearest first
        and their cosine similarities or Euclidean distances (see
        :func:`knn_blocks` for the arguments).
    """
    backend = resolve_backend(backend)
    queries, k, metric, block_size = _checked_arguments(queries, k, references, metric, block_size)
    if uses_tiled_host_path(backend, k):
        return _host_knn(queries, references, k, metric, block_size, num_threads)
    blocks = list(_blocks(queries, references, k, metric, block_size, backend))
    if backend == "keras":  # one device-to-host copy, after the last block
        return (ops.convert_to_numpy(ops.concatenate([b[2] for b in blocks])).astype(np.int64),
                ops.convert_to_numpy(ops.concatenate([b[3] for b in blocks])))
    return np.concatenate([b[2] for b in blocks]).astype(np.int64), np.concatenate([b[3] for b in blocks])
