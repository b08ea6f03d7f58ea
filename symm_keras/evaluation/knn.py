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

Peak extra memory is one ``b × n`` score block (``block_size`` rows; the
default keeps it near 128 MiB) plus the ``n × k`` result.
"""

import numpy as np
from keras import ops

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

    On CPU, numpy's BLAS and the chunked numpy top-k beat TensorFlow's eager
    matmul + ``top_k`` (about 2.4× at SOP scale, see docs/evaluation.md).
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


def _keras_score_blocks(queries, references, metric, block_size, mask_self):
    exclude_self = references is None
    q = ops.convert_to_tensor(queries)
    r = q if exclude_self else ops.convert_to_tensor(references)
    if metric == "cosine":
        q = l2_normalize(q)
        r = q if exclude_self else l2_normalize(r)
    ref_t = ops.transpose(r)
    ref_sq = ops.expand_dims(ops.sum(ops.square(r), axis=1), 0) if metric == "euclidean" else None
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
    elif isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}.")
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

    ``"keras"`` uses ``ops.top_k``. On the numpy path a small ``k``
    (``4·k·chunk ≤`` row length) is done in two exact stages: the maxima of
    consecutive ``chunk``-column chunks, the ``k`` best chunks, then the top-k
    among their ``k·chunk`` columns (about 10× faster than ``argpartition`` on
    a whole row). Any top-k element lies in one of those chunks: each chunk
    ranked ahead of its chunk holds an element ranked ahead of it (larger
    score, or equal score and lower index), and there are fewer than ``k``.
    """
    if backend == "keras":
        values, indices = ops.top_k(scores, k, sorted=True)
        return indices, values
    n = scores.shape[1]
    if chunk <= 1 or 4 * k * chunk > n:
        return _numpy_top_k(scores, k)
    columns = _chunk_candidates_numpy(scores, k, chunk)
    candidates = np.where(columns < n, np.take_along_axis(scores, np.minimum(columns, n - 1), axis=1), -np.inf)
    positions, values = _numpy_top_k(candidates, k)
    return np.take_along_axis(columns, positions, axis=1), values


def knn_blocks(queries, k, references=None, metric="cosine", block_size=None, backend="auto"):
    """Yield ``(start, stop, indices, scores)`` for consecutive blocks of queries.

    Args:
        queries: ``(n, d)`` embeddings.
        k: neighbours per query.
        references: ``(m, d)`` gallery; ``None`` searches ``queries`` against
            themselves and excludes each query from its own list by index.
        metric: ``"cosine"`` (scores are cosine similarities) or
            ``"euclidean"`` (scores are distances).
        block_size: queries per block; default from :func:`default_block_size`.
        backend: ``"keras"`` (active Keras backend and its device; yields
            backend tensors), ``"numpy"`` (host BLAS; yields numpy arrays) or
            ``"auto"`` (keras on a GPU/TPU, numpy on CPU; see :func:`resolve_backend`).

    ``indices[i]`` are the references of query ``start + i``, nearest first.
    """
    backend = resolve_backend(backend)
    checked_queries = check_embeddings(queries, "queries")
    num_references = checked_queries.shape[0] if references is None else np.shape(references)[0]
    k = _check_k(k, checked_queries.shape[0], num_references, references is None)
    metric = check_metric(metric)
    blocks = score_blocks(checked_queries, references, metric=metric, block_size=block_size, backend=backend)
    return _top_k_blocks(blocks, k, metric, backend)


def _top_k_blocks(blocks, k, metric, backend):
    for start, stop, block, scores in blocks:
        indices, best = top_k(scores, k, backend)
        if metric == "euclidean":
            if backend == "keras":
                q_sq = ops.sum(ops.square(block), axis=1, keepdims=True)
                best = ops.sqrt(ops.maximum(q_sq - best, 0.0))
            else:
                q_sq = np.einsum("ij,ij->i", block, block)[:, None]
                best = np.sqrt(np.maximum(q_sq - best, 0.0))
        yield start, stop, indices, best


def exact_knn(queries, k, references=None, metric="cosine", block_size=None, backend="auto"):
    """Exact kNN of every query, computed block by block; returns numpy arrays.

    Returns:
        ``(indices, scores)``, both ``(n, k)``: neighbour indices nearest first
        and their cosine similarities or Euclidean distances (see
        :func:`knn_blocks` for the arguments).
    """
    backend = resolve_backend(backend)
    indices, scores = [], []
    for _, _, block_indices, block_scores in knn_blocks(
        queries, k, references=references, metric=metric, block_size=block_size, backend=backend
    ):
        indices.append(np.asarray(ops.convert_to_numpy(block_indices)) if backend == "keras" else block_indices)
        scores.append(np.asarray(ops.convert_to_numpy(block_scores)) if backend == "keras" else block_scores)
    return np.concatenate(indices).astype(np.int64), np.concatenate(scores)
