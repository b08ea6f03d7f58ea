"""Exact k-nearest-neighbour search in row blocks: never the full n×n matrix.

The one exact search of symm_keras: evaluation (retrieval metrics) and Smart
Mining (neighbour lists) both call :func:`exact_knn`.

For a block of queries ``Q_b`` (``b`` rows) the scores against every reference
are one matrix product, and only the ``k`` best per row are kept:

* cosine: ``s(q, y) = q̂ · ŷ`` on L2-normalised rows (larger = closer);
* euclidean: ``s(q, y) = 2 q·y − ‖y‖²`` which orders references exactly as
  ``−‖q − y‖²`` (``‖q‖²`` is constant along a row); reported scores are the
  distances ``‖q − y‖``;
* squared_euclidean: the same scores, reported as ``‖q − y‖²`` (what Smart
  Mining and FANNG use).

When the references are the queries themselves (``references=None``), query
``i`` is removed from its own list **by index** (its score is set to ``−inf``
before the top-k), so duplicates or ties can never make another item, or the
query itself, be dropped in its place. Ties between references are broken by
the lower index on every path (TensorFlow's and JAX's ``top_k`` guarantee
this; torch and the numpy path enforce it, see :mod:`symm_keras.ops.host`).

Two paths compute the same lists:

* on a GPU/TPU (and ``backend="keras"``), one compiled call per ``b × m``
  score block on the active Keras backend (XLA through ``jax.jit`` or
  ``tf.function``): product, self mask and the two-stage :func:`top_k`, the
  results kept on the device until the last block (peak extra memory about
  two blocks, ``block_size`` rows, by default near 128 MiB each, plus the
  ``n × k`` result);
  with ``precision="bfloat16"`` or ``"tensorfloat32"`` (opt-in, this path
  only) the block product runs in that precision only to select
  ``c = k + rerank_margin`` candidates per query, which are then scored again
  exactly in float32 (their rows gathered, ``Σ_d q_d y_d`` as an elementwise
  product and sum, which no TF32/bfloat16 matmul setting touches) and the
  ``k`` best kept: the returned scores are float32 ones, and the lists equal
  the exact ones whenever the true ``k`` nearest are among the ``c`` best
  reduced-precision scores, i.e. unless more than ``rerank_margin``
  references come within the product's rounding error (about 2⁻⁸ of
  ``‖q‖‖y‖`` for bfloat16) of the ``k``-th;
* on a CPU (``backend="numpy"``) with numba and ``k ≤ 256``,
  :func:`symm_keras.neighbors.tiled.tiled_knn`: BLAS products of
  ``tile × tile`` blocks merged at once into per-query heaps, and for a
  self-search only the tiles on and above the diagonal (peak extra memory one
  4 MiB tile per thread, the heaps and a reordered copy of the embeddings). Otherwise numpy score blocks and the
  chunked :func:`top_k`. numba is imported only when the tiled path runs.

:func:`score_blocks` and :func:`top_k` stay public for callers that need the
scores themselves (retrieval ranks every item, not only the ``k`` nearest).
"""


import importlib.util

import numpy as np
from keras import ops

from symm_keras.ops.distances import l2_normalize
from symm_keras.ops.host import lower_index_top_k, to_numpy

METRICS = ("cosine", "euclidean", "squared_euclidean")


def check_metric(metric, allowed=METRICS):
    """Return ``metric`` lower-cased after checking it is one of ``allowed``."""
    if not isinstance(metric, str) or metric.lower() not in allowed:
        raise ValueError(f"metric must be one of {allowed}, got {metric!r}.")
    return metric.lower()


def check_embeddings(embeddings, name="embeddings"):
    """Return ``embeddings`` as a finite float32/float64 ``(n, d)`` numpy array.

    Raises:
        ValueError: not 2-D, empty, not numeric, or holding NaN/inf (the row
            indices of the first offending rows are named).
    """
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (num_items, embedding_dim) array, got shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}).")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}.")
    if array.dtype != np.float64:
        array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        shown = ", ".join(str(i) for i in bad[:8]) + (" ..." if bad.size > 8 else "")
        raise ValueError(f"{name} holds NaN or inf in {bad.size} row(s): {shown}.")
    return array


BACKENDS = ("auto", "keras", "numpy")
PRECISIONS = ("float32", "bfloat16", "tensorfloat32")
_BLOCK_ELEMENTS = 1 << 25  # 32 Mi scores = 128 MiB of float32 per block


def default_block_size(num_queries, num_references, rerank_elements=0):
    """Rows per block so that one ``rows × num_references`` block holds ≤ 2²⁵ scores.

    ``rerank_elements`` (``c·d`` with a reduced-precision product) bounds the
    gathered ``rows × c × d`` candidate rows of the re-rank the same way.
    """
    rows = _BLOCK_ELEMENTS // max(1, num_references, rerank_elements)
    return int(max(1, min(num_queries, rows)))


def default_rerank_margin(k):
    """Extra candidates re-ranked after a reduced-precision product: ``max(32, k)`` (our choice)."""
    return max(32, int(k))


def check_precision(precision, backend, k, rerank_margin):
    """Check ``precision``/``rerank_margin``; returns ``(precision, margin)`` (margin 0 for float32).

    A reduced precision needs the Keras block search (``backend`` ``"keras"``
    or ``"auto"``); the host paths have no reduced-precision product.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "float32":
        if rerank_margin is not None:
            raise ValueError("rerank_margin applies to a reduced precision only (precision='float32' is exact).")
        return precision, 0
    if backend == "numpy":
        raise ValueError(f"precision={precision!r} runs on the Keras block search: use backend='keras' or 'auto'.")
    if rerank_margin is None:
        return precision, default_rerank_margin(k)
    if isinstance(rerank_margin, bool) or not isinstance(rerank_margin, (int, np.integer)) or rerank_margin < 0:
        raise ValueError(f"rerank_margin must be a non-negative integer, got {rerank_margin!r}.")
    return precision, int(rerank_margin)


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

    On CPU, numpy's BLAS with a host top-k (the tiled search, or the chunked
    numpy top-k) beats the Keras backends' block search (TensorFlow's eager
    matmul + ``top_k`` by about 2.4× at SOP scale, docs/evaluation.md; the
    compiled block search is still slower than the tiled search, which
    computes half the products, docs/benchmarks.md).
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


def check_positive_int(value, name):
    """Return ``value`` as an int after checking it is a positive integer (``name`` in the error)."""
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
    ref_sq = np.einsum("ij,ij->i", references, references) if metric != "cosine" else None
    for start in range(0, queries.shape[0], block_size):
        stop = min(start + block_size, queries.shape[0])
        block = queries[start:stop]
        scores = block @ ref_t
        if metric != "cosine":
            scores *= 2.0
            scores -= ref_sq
        if exclude_self and mask_self:
            rows = np.arange(stop - start)
            scores[rows, start + rows] = -np.inf
        yield start, stop, block, scores


def device_operands(queries, references, metric):
    """``(q, rᵀ, ‖r‖²)`` on the backend's device: unit rows for cosine, the bias row for euclidean (else None).

    ``q @ rᵀ`` (minus the bias for the Euclidean metrics) are the scores of :func:`score_blocks`.
    """
    q = ops.convert_to_tensor(queries)
    r = q if references is None else ops.convert_to_tensor(references)
    if metric == "cosine":
        q = l2_normalize(q)
        r = q if references is None else l2_normalize(r)
    bias = ops.expand_dims(ops.sum(ops.square(r), axis=1), 0) if metric != "cosine" else None
    return q, ops.transpose(r), bias


def _keras_score_blocks(queries, references, metric, block_size, mask_self):
    exclude_self = references is None
    q, ref_t, ref_sq = device_operands(queries, references, metric)
    num_queries = queries.shape[0]
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        block = q[start:stop]
        scores = ops.matmul(block, ref_t)
        if metric != "cosine":
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
    closer): the cosine similarity, or ``2 q·y − ‖y‖²`` for the Euclidean metrics.
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
    check_positive_int(block_size, "block_size")
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
    backend (:func:`symm_keras.ops.host.lower_index_top_k`: ties to the lower index on every backend), ``"numpy"`` on the host.
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
        values, indices = lower_index_top_k(scores, k)
        return indices, values
    chunks = -(-n // chunk)
    padded = ops.pad(scores, [[0, 0], [0, chunks * chunk - n]], constant_values=float("-inf"))
    chunk_max = ops.max(ops.reshape(padded, (rows, chunks, chunk)), axis=2)
    _, best_chunks = lower_index_top_k(chunk_max, k)
    best_chunks = ops.sort(best_chunks, axis=1)  # candidate columns ascending: ties keep the lower index
    columns = ops.reshape(ops.expand_dims(best_chunks * chunk, 2) + ops.arange(chunk, dtype=best_chunks.dtype),
                          (rows, k * chunk))
    values, positions = lower_index_top_k(ops.take_along_axis(padded, columns, axis=1), k)
    return ops.take_along_axis(columns, positions, axis=1), values


# --- Device path: one compiled search per block of queries ----------------------------------
#
# Each block is one call of a compiled function (jax.jit / tf.function with XLA):
# product, self mask, two-stage top-k and distances fuse into a few kernels, and
# with the queries padded to whole blocks every block has the same shapes, so it
# compiles once per (n, d, k, precision). Results stay on the device until the
# last block. On JAX the float32 products run in full float32 (its GPU default
# is TF32, which can swap near neighbours) unless precision="tensorfloat32" asks
# for TF32 in the candidate product; TensorFlow's TF32 switch is process-wide
# (``tf.config.experimental.enable_tensor_float_32_execution``) and left to the
# caller. Eager per-op dispatch with a host copy per block took 1.07 s at
# 59,551 × 64 on an H100 (docs/gpu.md).

def _rerank(block, references, bias, candidates, k):
    """The ``k`` best of the ``candidates`` columns by exact float32 scores, ties to the lower index.

    The candidates are sorted by index first, so ``top_k`` (ties to the lower
    position) keeps the lower index on exact ties, as the float32 path does.
    """
    columns = ops.sort(candidates, axis=1)
    rows = ops.take(references, columns, axis=0)  # (b, c, d)
    scores = ops.sum(ops.expand_dims(block, 1) * rows, axis=2)
    if bias is not None:
        scores = 2.0 * scores - ops.take(bias[0], columns, axis=0)
    best, positions = lower_index_top_k(scores, k)
    return ops.take_along_axis(columns, positions, axis=1), best


def block_scores(queries, start, references_t, bias, block_size, exclude_self=True):
    """``(block, scores)`` of the ``block_size`` queries from row ``start`` (traced, on the device).

    ``scores = block @ references_t`` in the references' dtype (the reduced
    precision of a candidate product), returned in the queries' dtype, minus
    the bias for the Euclidean metrics (``2 q·y − ‖y‖²``, see
    :func:`device_operands`); with ``exclude_self`` each query's own column is −inf.
    """
    block = ops.slice(queries, [start, 0], [block_size, queries.shape[1]])
    scores = ops.cast(ops.matmul(ops.cast(block, references_t.dtype), references_t), block.dtype)
    if bias is not None:
        scores = 2.0 * scores - bias
    if exclude_self:
        rows = ops.expand_dims(ops.arange(block_size, dtype="int32") + start, 1)
        columns = ops.expand_dims(ops.arange(scores.shape[1], dtype="int32"), 0)
        scores = ops.where(rows == columns, float("-inf"), scores)
    return block, scores


def pad_to_blocks(queries, block_size):
    """``queries`` padded with zero rows to a whole number of blocks: every block has one shape."""
    padding = -queries.shape[0] % block_size
    return ops.pad(queries, [[0, padding], [0, 0]]) if padding else queries


_COMPILED = {}


def compiled_on_backend(fn, static_argnames, matmul_precision="highest"):
    """``fn`` compiled once per process for the active Keras backend: ``jax.jit`` with its
    float32 products in ``matmul_precision`` (JAX's GPU default is TF32, which can swap near
    neighbours), ``tf.function(jit_compile=True)`` (static shapes: one trace per shape), and
    ``fn`` itself elsewhere (torch runs it eagerly)."""
    import keras

    key = (fn, keras.backend.backend(), matmul_precision)
    if key not in _COMPILED:
        compiled = fn
        if key[1] == "jax":
            import jax

            def in_precision(*args, **kwargs):
                with jax.default_matmul_precision(matmul_precision):
                    return fn(*args, **kwargs)

            compiled = jax.jit(in_precision, static_argnames=static_argnames)
        elif key[1] == "tensorflow":
            import tensorflow as tf

            compiled = tf.function(fn, jit_compile=True)
        _COMPILED[key] = compiled
    return _COMPILED[key]


def _device_block_search(queries, start, references_t, bias, references, block_size, k, exclude_self, chunk,
                         squared, candidates):
    """One block: product, self mask, top-k (of ``candidates`` re-ranked exactly when ``references`` is given)."""
    block, scores = block_scores(queries, start, references_t, bias, block_size, exclude_self)
    if references is None:
        indices, best = _keras_top_k(scores, k, chunk)
    else:
        selected, _ = _keras_top_k(scores, candidates, chunk)
        indices, best = _rerank(block, references, bias, selected, k)
    if bias is not None:
        best = ops.maximum(ops.sum(ops.square(block), axis=1, keepdims=True) - best, 0.0)
        if not squared:
            best = ops.sqrt(best)
    return indices, best


_STATIC = ("block_size", "k", "exclude_self", "chunk", "squared", "candidates")


def _device_search(precision="float32"):
    """:func:`_device_block_search` compiled for the active Keras backend and product precision
    (on JAX full float32 products unless TF32 is asked for)."""
    matmul_precision = "tensorfloat32" if precision == "tensorfloat32" else "highest"
    return compiled_on_backend(_device_block_search, _STATIC, matmul_precision)


def _device_knn_blocks(queries, references, k, metric, block_size, chunk=64, precision="float32", rerank_margin=0):
    """Yield ``(start, stop, indices, scores)`` as backend tensors, one compiled call per block."""
    exclude_self = references is None
    q, references_t, bias = device_operands(queries, references, metric)
    rows = None  # the float32 reference rows of the exact re-rank
    candidates = k
    if precision != "float32":
        num_references = references_t.shape[1]
        candidates = min(k + rerank_margin, num_references - 1 if exclude_self else num_references)
        rows = ops.transpose(references_t)
        if precision == "bfloat16":
            references_t = ops.cast(references_t, "bfloat16")  # once, not per block
    num_queries = queries.shape[0]
    q = pad_to_blocks(q, block_size)
    search = _device_search(precision)
    for start in range(0, num_queries, block_size):
        stop = min(start + block_size, num_queries)
        indices, best = search(q, ops.convert_to_tensor(start, "int32"), references_t, bias, rows,
                               block_size=block_size, k=k, exclude_self=exclude_self, chunk=chunk,
                               squared=metric == "squared_euclidean", candidates=candidates)
        if stop - start < block_size:
            indices, best = indices[: stop - start], best[: stop - start]
        yield start, stop, indices, best


TILED_MAX_K = 256  # larger k: numpy blocks + chunked top-k (see uses_tiled_host_path)


def _unit_rows(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), x.dtype.type(1e-12))


def _row_squared_norms(x):
    return np.einsum("ij,ij->i", x, x)


def numba_available():
    """True when numba is installed (looked up without importing it; a failing lookup counts as absent)."""
    try:
        return importlib.util.find_spec("numba") is not None
    except ImportError:
        return False


def uses_tiled_host_path(backend, k=1):
    """True when ``exact_knn``/``knn_blocks`` with ``backend`` and ``k`` run the tiled host search.

    That is :func:`symm_keras.neighbors.tiled.tiled_knn`, on the host
    (``"numpy"``) with numba and ``k ≤`` :data:`TILED_MAX_K`:
    a heap insertion costs ``O(log k)`` and about ``k·(1 + ln(n/k))`` of them
    happen per query, so for large ``k`` the numpy blocks with the chunked
    top-k are faster (15,000 × 128 self-search: tiled 1.9 / 6.0 / 24.4 s at
    k = 100 / 300 / 1001, numpy blocks 6.5 / 8.4 / 11.7 s).
    """
    return resolve_backend(backend) == "numpy" and k <= TILED_MAX_K and numba_available()


def _checked_arguments(queries, k, references, metric, block_size):
    queries = check_embeddings(queries, "queries")
    num_references = queries.shape[0] if references is None else np.shape(references)[0]
    k = _check_k(k, queries.shape[0], num_references, references is None)
    metric = check_metric(metric)
    if block_size is not None:
        block_size = check_positive_int(block_size, "block_size")
    return queries, k, metric, block_size


def _host_knn(queries, references, k, metric, block_size, num_threads=None):
    from symm_keras.neighbors.tiled import tiled_knn  # imports numba

    queries, references, metric = _prepare(queries, references, metric)
    indices, best = tiled_knn(queries, k, references=references, metric=metric, tile=block_size,
                              num_threads=num_threads)
    if metric != "cosine":
        best = _distances_from_scores(_row_squared_norms(queries), best, metric)
    return indices, best


def knn_blocks(queries, k, references=None, metric="cosine", block_size=None, backend="auto", precision="float32",
               rerank_margin=None):
    """Yield ``(start, stop, indices, scores)`` for consecutive blocks of queries.

    Args:
        queries: ``(n, d)`` embeddings.
        k: neighbours per query.
        references: ``(m, d)`` gallery; ``None`` searches ``queries`` against
            themselves and excludes each query from its own list by index.
        metric: ``"cosine"`` (scores are cosine similarities),
            ``"euclidean"`` (scores are distances) or ``"squared_euclidean"``
            (squared distances).
        block_size: queries per block; on the tiled host path (see
            :func:`uses_tiled_host_path`) also the tile edge of the tiled search (default
            ``tiled.HOST_TILE``), otherwise rows per score block (default from
            :func:`default_block_size`).
        backend: ``"keras"`` (active Keras backend and its device; yields
            backend tensors), ``"numpy"`` (host BLAS; yields numpy arrays) or
            ``"auto"`` (keras on a GPU/TPU, numpy on CPU; see :func:`resolve_backend`).
        precision: ``"float32"`` (default: every product in the input
            precision), or ``"bfloat16"`` / ``"tensorfloat32"``: that product
            selects ``k + rerank_margin`` candidates, re-ranked by exact
            float32 scores (module docstring). A reduced precision runs the
            Keras block search, also under ``backend="auto"`` on a CPU.
            ``"tensorfloat32"`` is TF32 on JAX (full float32 where the device
            has no TF32, e.g. a CPU); on TensorFlow the product follows the
            process-wide TF32 setting.
        rerank_margin: extra candidates for a reduced precision (default
            :func:`default_rerank_margin`, ``max(32, k)``).

    ``indices[i]`` are the references of query ``start + i``, nearest first.
    On the host path a block is final only once every tile is merged, so the
    whole ``(n, k)`` result is computed before the first block is yielded.
    """
    queries, k, metric, block_size = _checked_arguments(queries, k, references, metric, block_size)
    precision, margin = check_precision(precision, backend, k, rerank_margin)
    backend = resolve_backend("keras" if precision != "float32" and backend == "auto" else backend)
    if uses_tiled_host_path(backend, k):
        from symm_keras.neighbors.tiled import HOST_TILE

        return _slices(*_host_knn(queries, references, k, metric, block_size), block_size or HOST_TILE)
    return _blocks(queries, references, k, metric, block_size, backend, precision, margin)


def _blocks(queries, references, k, metric, block_size, backend, precision="float32", margin=0):
    if backend == "keras":
        queries, references, metric = _prepare(queries, references, metric)
        num_references = queries.shape[0] if references is None else references.shape[0]
        rerank_elements = (k + margin) * queries.shape[1] if precision != "float32" else 0
        block_size = block_size or default_block_size(queries.shape[0], num_references, rerank_elements)
        return _device_knn_blocks(queries, references, k, metric, block_size, precision=precision,
                                  rerank_margin=margin)
    return _host_top_k_blocks(score_blocks(queries, references, metric=metric, block_size=block_size,
                                           backend="numpy"), k, metric)


def _slices(indices, scores, step):
    for start in range(0, indices.shape[0], step):
        stop = min(start + step, indices.shape[0])
        yield start, stop, indices[start:stop], scores[start:stop]


def _distances_from_scores(query_squared_norms, scores, metric):
    """``‖q − y‖² = ‖q‖² − (2 q·y − ‖y‖²)``, clipped at 0 against rounding (its root for ``"euclidean"``)."""
    distances = query_squared_norms[:, None] - scores
    np.maximum(distances, 0.0, out=distances)
    return distances if metric == "squared_euclidean" else np.sqrt(distances, out=distances)


def _host_top_k_blocks(blocks, k, metric):
    for start, stop, block, scores in blocks:
        indices, best = top_k(scores, k, "numpy")
        if metric != "cosine":
            best = _distances_from_scores(_row_squared_norms(block), best, metric)
        yield start, stop, indices, best


def exact_knn(queries, k, references=None, metric="cosine", block_size=None, backend="auto", num_threads=None,
              precision="float32", rerank_margin=None):
    """Exact kNN of every query; returns numpy arrays.

    On a CPU (``backend="numpy"``, or ``"auto"`` without an accelerator) with
    numba and ``k ≤`` :data:`TILED_MAX_K` this is the tiled search of
    :mod:`symm_keras.neighbors.tiled` (faster than faiss' exact search; see
    docs/neighbors.md), with ``num_threads``
    workers (default: every CPU this process may use); otherwise score
    blocks + :func:`top_k`.

    Returns:
        ``(indices, scores)``, both ``(n, k)``: neighbour indices (int64)
        nearest first and their cosine similarities, Euclidean distances or
        squared Euclidean distances, in the input precision (see
        :func:`knn_blocks` for the arguments, ``precision`` and
        ``rerank_margin`` included).
    """
    queries, k, metric, block_size = _checked_arguments(queries, k, references, metric, block_size)
    precision, margin = check_precision(precision, backend, k, rerank_margin)
    backend = resolve_backend("keras" if precision != "float32" and backend == "auto" else backend)
    if uses_tiled_host_path(backend, k):
        return _host_knn(queries, references, k, metric, block_size, num_threads)
    blocks = list(_blocks(queries, references, k, metric, block_size, backend, precision, margin))
    if backend == "keras":  # one device-to-host copy, after the last block
        return (to_numpy(ops.concatenate([b[2] for b in blocks])).astype(np.int64),
                to_numpy(ops.concatenate([b[3] for b in blocks])))
    return np.concatenate([b[2] for b in blocks]).astype(np.int64), np.concatenate([b[3] for b in blocks])
