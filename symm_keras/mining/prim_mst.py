"""Prim's minimum spanning trees, one per class, for every class of a batch at once.

DAMLRRM (Xu et al., CVPR 2019, Sec. 3.3 and Figure 3) relaxes the positive-pair
constraint: instead of all same-class pairs of the neat stream, only the edges
of a minimum-cost spanning tree built inside each class form the positive pair
pool ``PP`` (eq. 3). The tree is grown with Prim's algorithm (Prim 1957):

1. start every class from one vertex (here: its first occurrence in the batch);
2. attach the unvisited vertex joined to the tree by the lightest edge;
3. repeat until the class is covered.

All classes grow in lockstep, one vertex per class per iteration, so a batch
of ``m`` classes × ``k`` images needs ``k − 1`` iterations of ``O(n²)``
element-wise work on the ``n × n`` weight matrix (``keras.ops`` only, jit-able
on every backend). Edges never cross classes, so the result is a spanning
forest with one tree per class.

Edge *selection* is not differentiable: weights go through ``stop_gradient``
and the output is integer indices. A loss evaluated on the selected pairs is
differentiated through its own distance matrix.

Ties are broken deterministically and identically on every backend: among
equally light candidate edges, the lowest-index unvisited vertex joins first,
and it attaches to the lowest-index tree vertex offering that weight.
"""

from keras import ops

from symm_keras.ops.labels import same_class_mask
from symm_keras.ops.pairs import occurrence_rank

# Above this many iterations the loop is compiled as a loop instead of unrolled.
_MAX_UNROLLED_ITERATIONS = 32


def _check_inputs(distances, labels, max_tree_size):
    shape = tuple(distances.shape)
    if len(shape) != 2 or (None not in shape and shape[0] != shape[1]):
        raise ValueError(f"distances must be a square (n, n) weight matrix, got shape {shape}.")
    if labels is not None:
        label_shape = tuple(labels.shape)
        if len(label_shape) != 1:
            raise ValueError(f"labels must be a vector of n class labels, got shape {label_shape}.")
        if None not in (label_shape[0], shape[0]) and label_shape[0] != shape[0]:
            raise ValueError(
                f"labels has {label_shape[0]} entries but distances is {shape[0]} × {shape[1]}."
            )
    if max_tree_size is not None and (int(max_tree_size) != max_tree_size or max_tree_size < 1):
        raise ValueError(f"max_tree_size must be a positive integer, got {max_tree_size!r}.")


def prim_minimum_spanning_forest(distances, labels=None, max_tree_size=None):
    """Prim's minimum spanning tree inside every class, as a parent vector.

    Args:
        distances: ``(n, n)`` symmetric matrix of finite edge weights (e.g.
            Euclidean distances between embeddings). Only gradients-free
            values are used.
        labels: optional ``(n,)`` integer class labels; edges join only
            vertices of the same class, giving one tree per class. ``None``
            treats the whole matrix as one complete graph.
        max_tree_size: the expected largest class size (``k`` for an ``m × k``
            neat stream): Prim runs ``max_tree_size − 1`` iterations unrolled
            instead of ``n − 1``, then a loop that stops at once when every
            tree is complete, or grows a larger class until it is. Every
            layout gets its full forest, eagerly and compiled.

    Returns:
        int32 ``(n,)`` vector ``parent``: ``parent[j]`` is the tree vertex that
        vertex ``j`` was attached to, and ``-1`` for the root of each class
        (its first occurrence in the batch). The tree edges are the pairs
        ``(parent[j], j)`` with ``parent[j] ≥ 0``: ``n − (number of classes)``
        of them.
    """
    distances = ops.convert_to_tensor(distances)
    _check_inputs(distances, labels, max_tree_size)
    weights = ops.stop_gradient(distances)
    n_static = weights.shape[0]
    n = ops.shape(weights)[0]
    if labels is None:
        labels = ops.zeros((n,), dtype="int32")
    labels = ops.cast(labels, "int32")

    index = ops.arange(n, dtype="int32")
    not_self = ops.not_equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0))
    same = ops.logical_and(same_class_mask(labels), not_self)
    # same_or_self[j, j'] compares vertex j with vertex j' of the same class.
    same_or_self = same_class_mask(labels)
    inf = ops.cast(float("inf"), weights.dtype)
    index_row = ops.expand_dims(index, 0)  # j along axis 1
    index_col = ops.expand_dims(index, 1)  # i along axis 0

    def grow(_, state):
        visited, parent = state
        # Candidate edges (i in the tree, j outside it, same class).
        candidate = ops.logical_and(
            same,
            ops.logical_and(ops.expand_dims(visited, 1), ops.logical_not(ops.expand_dims(visited, 0))),
        )
        candidate_weight = ops.where(candidate, weights, inf)
        best = ops.min(candidate_weight, axis=0)  # lightest edge reaching each j
        reachable = ops.any(candidate, axis=0)
        # Lowest-index tree vertex offering that lightest edge.
        offers_best = ops.logical_and(candidate, ops.equal(candidate_weight, ops.expand_dims(best, 0)))
        best_parent = ops.min(ops.where(offers_best, index_col, n), axis=0)
        # Per class, the reachable j with the smallest (best weight, index) joins.
        best_j = ops.expand_dims(best, 1)
        best_other = ops.expand_dims(best, 0)
        lighter = ops.logical_or(
            ops.less(best_other, best_j),
            ops.logical_and(ops.equal(best_other, best_j), ops.less(index_row, index_col)),
        )
        beaten = ops.any(
            ops.logical_and(ops.logical_and(same_or_self, ops.expand_dims(reachable, 0)), lighter),
            axis=1,
        )
        joins = ops.logical_and(reachable, ops.logical_not(beaten))
        visited = ops.logical_or(visited, joins)
        parent = ops.where(joins, ops.cast(best_parent, "int32"), parent)
        return visited, parent

    visited = ops.equal(occurrence_rank(labels), 0)  # one root per class
    parent = ops.full((n,), -1, dtype="int32")
    if max_tree_size is not None:
        iterations = int(max_tree_size) - 1
    elif n_static is not None:
        iterations = int(n_static) - 1
    else:
        iterations = None
    state = (visited, parent)
    if iterations is not None and iterations <= _MAX_UNROLLED_ITERATIONS:
        for step in range(iterations):
            state = grow(step, state)
    else:
        upper = iterations if iterations is not None else n - 1
        state = ops.fori_loop(0, upper, grow, state)
    if max_tree_size is not None:  # a class larger than max_tree_size: grow on until it is covered

        def unfinished(visited, parent):
            frontier = ops.logical_and(ops.expand_dims(visited, 1), ops.logical_not(ops.expand_dims(visited, 0)))
            return ops.any(ops.logical_and(same, frontier))

        state = ops.while_loop(unfinished, lambda visited, parent: grow(None, (visited, parent)), state)
    return state[1]


def tree_pair_mask(parent):
    """Symmetric boolean ``(n, n)`` mask of the tree edges ``{(parent[j], j)}``.

    ``mask[i, j]`` is ``True`` when ``i`` and ``j`` are joined by a tree edge;
    use ``ops.triu(mask, 1)`` to count each unordered pair once.
    """
    parent = ops.convert_to_tensor(parent)
    if len(parent.shape) != 1:
        raise ValueError(f"parent must be a vector (n,), got shape {tuple(parent.shape)}.")
    n = ops.shape(parent)[0]
    index = ops.arange(n, dtype="int32")
    attached = ops.equal(ops.expand_dims(ops.cast(parent, "int32"), 0), ops.expand_dims(index, 1))
    return ops.logical_or(attached, ops.transpose(attached))


def prim_positive_pairs(distances, labels=None, max_tree_size=None):
    """The DAMLRRM positive pair pool ``PP`` (eq. 3) as a symmetric ``(n, n)`` mask.

    ``tree_pair_mask(prim_minimum_spanning_forest(distances, labels, max_tree_size))``.
    """
    return tree_pair_mask(prim_minimum_spanning_forest(distances, labels, max_tree_size))
