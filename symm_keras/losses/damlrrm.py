"""DAMLRRM graph loss + shuffled loss (Xu et al., CVPR 2019, Sec. 3.2–3.3).

A DAMLRRM batch holds two streams fed through one shared network (Fig. 1,
eq. 1): the **neat** stream ``B^x`` of ``m`` classes × ``k`` images (k = 5 for
CUB/Cars196, 3 for SOP) followed by the **shuffled** stream ``B^s`` of images
drawn from a differently sized pool. Rows ``[0, neat_size)`` of ``y_pred`` are
the neat stream, the remaining rows the shuffled stream. Any labels are
defined, eagerly and compiled: the graph loss takes the tree of every class
the neat stream holds, whatever its size, and the shuffled loss pairs each
shuffled image with the neat classes (a class absent from the neat stream has
negatives only). :func:`check_damlrrm_layout` is an opt-in eager check of the
``m × k`` layout.

With Euclidean distances ``D``, the paper's "boundary α" (option ``boundary``,
paper: 30) and "margin β" (option ``margin``, paper: 0.5), Sec. 3.3 above
eq. 4: positives should be closer than ``α − β`` and negatives farther than
``α + β``. (The family's bare ``alpha``/``beta`` are refused, see
:mod:`symm_keras.losses.base`.) The paper's eq. 4–5 are garbled in the text;
the reading implemented here (issue 6) is::

    L_g = (1/P_g) (Σ_{(i,j)∈PP} [D_ij − α + β]²₊ + Σ_{(i,j)∈NP} [α + β − D_ij]²₊)   (eq. 4)
    L_s = (1/P_s) (Σ_{(i,j)∈NN} [D_ij − α + β]²₊ + Σ_{(i,j)∈NP_s} [α + β − D_ij]²₊) (eq. 5)
    L   = L_g + L_s                                                               (eq. 6)

* ``PP``: edges of Prim's minimum spanning tree inside every class of the neat
  stream (eq. 3, :mod:`symm_keras.mining.prim_mst`); ``NP``: all
  different-class pairs of the neat stream. Unordered pairs, each counted once.
* ``NN``: for every shuffled image whose class is in the neat stream, the pair
  with its nearest same-class neat image ("we force it to connect to the
  nearest point in the tree"); ``NP_s``: all different-class (neat, shuffled)
  pairs.
* ``P_g``, ``P_s``: number of pairs whose hinge is active (violating pairs).
  A term with no violating pair is 0 with zero gradient.

Pair *selection* (tree edges, nearest positives) is not differentiated; the
hinges are. ``boundary`` α = 30 assumes raw, not L2-normalised, embeddings (the
paper's 512-d FC output).

Ablations of the paper as options: ``terms="shuffled"`` is "OURS1" (Table 6),
``terms="graph"`` is "OURS2" (Table 7), and ``positive_pairs="all"`` with
``terms="graph"`` is "Full PPs" (Table 7: every same-class neat pair instead of
the tree).
"""

import numpy as np
from keras import ops

from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.ops.distances import pairwise_distances
from symm_keras.ops.labels import flatten_labels, same_class_mask
from symm_keras.ops.pairs import check_pk_layout

TERMS = ("both", "graph", "shuffled")
POSITIVE_PAIRS = ("tree", "all")
PARTS = (
    "loss",
    "graph_loss",
    "shuffled_loss",
    "graph_violations",
    "shuffled_violations",
    "violating_pairs",
    "mean_tree_edge",
)
_LOSS_OPTIONS = ("boundary", "margin", "neat_size", "images_per_class", "terms", "positive_pairs")


def _check_options(boundary, margin, terms, positive_pairs, neat_size, images_per_class):
    if terms not in TERMS:
        raise ValueError(f"terms must be one of {TERMS}, got {terms!r}.")
    if positive_pairs not in POSITIVE_PAIRS:
        raise ValueError(f"positive_pairs must be one of {POSITIVE_PAIRS}, got {positive_pairs!r}.")
    if not np.isfinite(boundary) or not np.isfinite(margin):
        raise ValueError(f"boundary and margin must be finite, got boundary={boundary!r}, margin={margin!r}.")
    if margin < 0:
        raise ValueError(f"the margin must be ≥ 0, got margin={margin!r}.")
    for name, value in (("neat_size", neat_size), ("images_per_class", images_per_class)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")


def check_damlrrm_layout(neat_labels, images_per_class):
    """Raise ``ValueError`` unless every neat-stream class occurs ``images_per_class`` times.

    Opt-in, for callers that want to insist on the sampler's ``m × k`` layout;
    runs only when label values are concrete (eager). The loss itself needs no
    check: any neat stream gets the forest of its classes, whatever their sizes
    (module docstring).
    """
    if images_per_class is not None:
        batch = f"the DAMLRRM neat stream (first rows of the batch) as m classes × {images_per_class} images"
        check_pk_layout(neat_labels, images_per_class, batch=batch)


def split_streams(y_true, y_pred, neat_size=None, images_per_class=None, need_shuffled=True):
    """Split a DAMLRRM batch into ``(neat_labels, neat, shuffled_labels, shuffled)``.

    ``neat_size`` defaults to half the batch. Raises ``ValueError`` naming the
    problem when the sizes do not fit the batch (static shapes); the labels
    need no check (see :func:`check_damlrrm_layout`).
    """
    labels = flatten_labels(y_true, y_pred)
    batch = y_pred.shape[0]
    if neat_size is None:
        if batch is not None and batch % 2:
            raise ValueError(
                f"a DAMLRRM batch with neat_size=None is split in two equal streams; "
                f"got an odd batch size {batch}. Pass neat_size explicitly."
            )
        neat_size = batch // 2 if batch is not None else ops.shape(y_pred)[0] // 2
    if batch is not None:
        if neat_size > batch:
            raise ValueError(f"neat_size={neat_size} is larger than the batch ({batch} embeddings).")
        if need_shuffled and neat_size == batch:
            raise ValueError(
                f"the shuffled loss needs a shuffled stream after the {neat_size} neat "
                f"embeddings, but the batch has only {batch}."
            )
    if images_per_class is not None and isinstance(neat_size, int) and neat_size % images_per_class:
        raise ValueError(
            f"neat_size={neat_size} is not a multiple of images_per_class={images_per_class} "
            "(the neat stream is m classes × k images)."
        )
    neat_labels, shuffled_labels = labels[:neat_size], labels[neat_size:]
    return neat_labels, y_pred[:neat_size], shuffled_labels, y_pred[neat_size:]


def _hinge_terms(distances, positives, negatives, boundary, margin):
    """``(Σ squared hinges, number of violating pairs)`` over two pair masks."""
    zeros = ops.zeros_like(distances)
    positive_hinge = ops.where(positives, ops.relu(distances - boundary + margin), zeros)
    negative_hinge = ops.where(negatives, ops.relu(boundary + margin - distances), zeros)
    hinge = positive_hinge + negative_hinge
    total = ops.sum(ops.square(hinge))
    violations = ops.sum(ops.cast(ops.greater(hinge, 0.0), distances.dtype))
    return total, violations


def _normalised(total, violations):
    return total / ops.maximum(violations, 1.0)


def _graph_parts(neat_labels, neat, boundary, margin, positive_pairs, images_per_class):
    # Imported here: symm_keras.mining loads numba, which the other losses never need.
    from symm_keras.mining.prim_mst import prim_minimum_spanning_forest, tree_pair_mask

    distances = pairwise_distances(neat)
    n = ops.shape(neat)[0]
    upper = ops.cast(ops.triu(ops.ones((n, n)), k=1), "bool")
    same = same_class_mask(neat_labels)
    tree = tree_pair_mask(prim_minimum_spanning_forest(distances, neat_labels, images_per_class))
    tree = ops.logical_and(tree, upper)
    if positive_pairs == "tree":
        positives = tree
    else:
        positives = ops.logical_and(same, upper)
    negatives = ops.logical_and(ops.logical_not(same), upper)
    total, violations = _hinge_terms(distances, positives, negatives, boundary, margin)
    tree_lengths = ops.where(tree, ops.stop_gradient(distances), ops.zeros_like(distances))
    tree_edges = ops.sum(ops.cast(tree, distances.dtype))
    mean_tree_edge = ops.sum(tree_lengths) / ops.maximum(tree_edges, 1.0)
    return _normalised(total, violations), violations, mean_tree_edge


def _shuffled_parts(neat_labels, neat, shuffled_labels, shuffled, boundary, margin):
    distances = pairwise_distances(neat, shuffled)  # (neat, shuffled)
    same = same_class_mask(neat_labels, shuffled_labels)
    n = ops.shape(neat)[0]
    index = ops.expand_dims(ops.arange(n, dtype="int32"), 1)
    # Nearest same-class neat image of every shuffled image (lowest index on ties).
    selection = ops.where(same, ops.stop_gradient(distances), ops.cast(float("inf"), distances.dtype))
    nearest = ops.min(selection, axis=0, keepdims=True)
    is_nearest = ops.logical_and(same, ops.equal(selection, nearest))
    first = ops.min(ops.where(is_nearest, index, n), axis=0, keepdims=True)
    positives = ops.logical_and(is_nearest, ops.equal(index, first))
    negatives = ops.logical_not(same)
    total, violations = _hinge_terms(distances, positives, negatives, boundary, margin)
    return _normalised(total, violations), violations


def damlrrm_graph_loss(
    neat_labels, neat_embeddings, boundary=30.0, margin=0.5, positive_pairs="tree", images_per_class=None
):
    """Graph loss ``L_g`` (eq. 4) of the neat stream alone.

    Args:
        neat_labels: ``(n,)`` integer labels of the neat stream.
        neat_embeddings: ``(n, D)`` embeddings of the neat stream.
        boundary: boundary ``α``; margin: margin ``β`` (as :func:`damlrrm_loss_parts`).
        positive_pairs: ``"tree"`` (Prim tree edges, the paper) or ``"all"``
            (every same-class pair, the "Full PPs" ablation).
        images_per_class: ``k`` of the ``m × k`` neat stream: Prim's first
            ``k − 1`` steps are unrolled (a larger class is grown on). ``None``:
            ``n − 1`` steps. Both give every class its whole tree.
    """
    _check_options(boundary, margin, "graph", positive_pairs, None, images_per_class)
    neat = as_float(neat_embeddings)
    labels = flatten_labels(neat_labels, neat)
    boundary, margin = ops.cast(boundary, neat.dtype), ops.cast(margin, neat.dtype)
    return _graph_parts(labels, neat, boundary, margin, positive_pairs, images_per_class)[0]


def damlrrm_shuffled_loss(
    neat_labels, neat_embeddings, shuffled_labels, shuffled_embeddings, boundary=30.0, margin=0.5
):
    """Shuffled loss ``L_s`` (eq. 5) between the neat and the shuffled stream (options: :func:`damlrrm_loss_parts`)."""
    _check_options(boundary, margin, "shuffled", "tree", None, None)
    neat = as_float(neat_embeddings)
    shuffled = ops.cast(as_float(shuffled_embeddings), neat.dtype)
    if neat.shape[-1] is not None and shuffled.shape[-1] is not None and neat.shape[-1] != shuffled.shape[-1]:
        raise ValueError(
            f"neat and shuffled embeddings differ in dimension: {neat.shape[-1]} vs {shuffled.shape[-1]}."
        )
    neat_labels = flatten_labels(neat_labels, neat)
    shuffled_labels = flatten_labels(shuffled_labels, shuffled)
    boundary, margin = ops.cast(boundary, neat.dtype), ops.cast(margin, neat.dtype)
    return _shuffled_parts(neat_labels, neat, shuffled_labels, shuffled, boundary, margin)[0]


def damlrrm_loss_parts(
    y_true, y_pred, boundary=30.0, margin=0.5, neat_size=None, images_per_class=None, terms="both",
    positive_pairs="tree",
):  # fmt: skip
    """Every quantity of the DAMLRRM objective for one batch, as a dict of scalars.

    Args:
        y_true: ``(B,)`` or ``(B, 1)`` integer labels, neat stream first.
        y_pred: ``(B, D)`` embeddings in the same order.
        boundary: the boundary ``α`` (Sec. 3.3; paper: 30, Table 4).
        margin: the margin ``β`` (Sec. 3.3; paper: 0.5, Table 5).
        neat_size: rows of the neat stream (``m × k``); ``None`` = half the batch.
        images_per_class: ``k`` (5 for CUB/Cars196, 3 for SOP): Prim's first
            ``k − 1`` steps are unrolled and a larger class is grown on, so any
            neat stream gets its whole forest; ``None``: ``neat_size − 1`` steps.
        terms: ``"both"`` (default, eq. 6), ``"graph"`` (L_g only, "OURS2")
            or ``"shuffled"`` (L_s only, "OURS1").
        positive_pairs: ``"tree"`` (default, Prim tree) or ``"all"``
            ("Full PPs": every same-class neat pair).

    Keys: ``loss`` (eq. 6 restricted to ``terms``), ``graph_loss`` (L_g),
    ``shuffled_loss`` (L_s), ``graph_violations`` (P_g),
    ``shuffled_violations`` (P_s), ``violating_pairs`` (P_g + P_s, over the
    active terms) and ``mean_tree_edge`` (mean length of the Prim-tree edges
    of the neat stream). An inactive term is reported as 0.
    """
    _check_options(boundary, margin, terms, positive_pairs, neat_size, images_per_class)
    y_pred = as_float(y_pred)
    need_graph = terms in ("both", "graph")
    need_shuffled = terms in ("both", "shuffled")
    neat_labels, neat, shuffled_labels, shuffled = split_streams(
        y_true, y_pred, neat_size, images_per_class, need_shuffled=need_shuffled
    )
    boundary, margin = ops.cast(boundary, y_pred.dtype), ops.cast(margin, y_pred.dtype)
    zero = ops.zeros((), dtype=y_pred.dtype)
    graph_loss, graph_violations, mean_tree_edge = _graph_parts(
        neat_labels, neat, boundary, margin, positive_pairs, images_per_class
    )
    if not need_graph:
        graph_loss, graph_violations = zero, zero
    if need_shuffled:
        shuffled_loss, shuffled_violations = _shuffled_parts(
            neat_labels, neat, shuffled_labels, shuffled, boundary, margin
        )
    else:
        shuffled_loss, shuffled_violations = zero, zero
    return {
        "loss": graph_loss + shuffled_loss,
        "graph_loss": graph_loss,
        "shuffled_loss": shuffled_loss,
        "graph_violations": graph_violations,
        "shuffled_violations": shuffled_violations,
        "violating_pairs": graph_violations + shuffled_violations,
        "mean_tree_edge": mean_tree_edge,
    }


def damlrrm_loss(y_true, y_pred, **options):
    """DAMLRRM objective ``L = L_g + L_s`` (eq. 6) of a neat+shuffled batch.

    The ``"loss"`` of :func:`damlrrm_loss_parts`, which documents the
    ``options`` (``boundary``, ``margin``, ``neat_size``, ``images_per_class``,
    ``terms``, ``positive_pairs``). Returns a scalar; 0 with zero gradient when
    no pair violates its constraint.
    """
    return damlrrm_loss_parts(y_true, y_pred, **options)["loss"]


@register
class DAMLRRMLoss(EmbeddingLoss):
    """DAMLRRM loss ``L_g + L_s`` (Xu et al., CVPR 2019, eq. 4–6); see :func:`damlrrm_loss`.

    Expects the ``"damlrrm"`` batch layout: the neat stream (``m`` classes ×
    ``images_per_class``) in the first ``neat_size`` rows, then the shuffled
    stream.
    """

    batch_layout = "damlrrm"
    # L_g and L_s are divided by their numbers of violating pairs: a batch-level
    # normalisation that this class does not split into per-sample values.
    per_sample = False
    #: the paper's α and β (Sec. 3.3) under the family's names; the bare Greek ones are refused.
    renamed_options = {
        "alpha": "the boundary α of Xu et al. (Sec. 3.3, eq. 4) is boundary=",
        "beta": "the margin β of Xu et al. (Sec. 3.3, eq. 4) is margin=",
    }
    parts_fn = staticmethod(damlrrm_loss_parts)
    summands = ("graph_loss", "shuffled_loss")
    diagnostics = ("graph_violations", "shuffled_violations", "violating_pairs", "mean_tree_edge")
    parts_prefix = "damlrrm"

    def __init__(
        self, boundary=30.0, margin=0.5, neat_size=None, images_per_class=None, terms="both", positive_pairs="tree",
        name="damlrrm_loss", **kwargs,
    ):  # fmt: skip
        _check_options(boundary, margin, terms, positive_pairs, neat_size, images_per_class)
        super().__init__(
            damlrrm_loss,
            name=name,
            boundary=float(boundary),
            margin=float(margin),
            neat_size=None if neat_size is None else int(neat_size),
            images_per_class=None if images_per_class is None else int(images_per_class),
            terms=terms,
            positive_pairs=positive_pairs,
            **kwargs,
        )
