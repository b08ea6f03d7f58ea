"""Semi-hard triplet loss (Schroff et al., FaceNet 2015, Sec. 3.2).

Exactly the semantics of TF Addons' ``triplet_semihard_loss`` (the "Triplet†"
rows of the Symm paper's tables), with one deliberate change: a batch with no
positive pair gives 0 instead of NaN.

For every ordered positive pair ``(a, p)`` (``a ≠ p``, same class), with
distances ``d`` (Euclidean by default) and the negatives ``N(a)`` of ``a``::

    semi(a, p) = min { d_an : n ∈ N(a), d_an > d_ap }   if that set is not empty
               = max { d_an : n ∈ N(a) }               otherwise (hardest-of-easy)
               = min_j d_aj  (= 0, the self-distance)  if N(a) is empty

    L = 1/|P| Σ_{(a,p)∈P} [ m + d_ap − semi(a, p) ]_+

The last fallback is TF Addons' ``masked_maximum`` over an empty mask; it
yields the docstring golden value 2.4142137 for labels ``[0, 0]``, embeddings
``[[0, 1], [1, 0]]`` and ``m = 1``. Per sample
(:func:`semihard_triplet_loss_per_sample`): row ``a`` holds the terms of its
positive pairs ``(a, ·)``, scaled so that the batch mean is ``L``.

Parts (:func:`semihard_triplet_loss_parts`): ``hinge`` (the loss itself) and
the diagnostic ``active_share`` (logged as ``semihard_active_share``): the
share of positive pairs ``(a, p)`` whose hinge is non-zero.
"""

from keras import ops

from symm_keras.losses._validation import check_choice, check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, hinge_parts, register
from symm_keras.ops.distances import (
    l2_normalize,
    pairwise_distances,
    pairwise_similarities,
    pairwise_squared_distances,
)
from symm_keras.ops.labels import flatten_labels, negative_mask, positive_mask
from symm_keras.ops.reductions import (
    masked_any,
    masked_count,
    masked_max,
    masked_min,
    per_sample_values,
    safe_mean,
)

DISTANCE_METRICS = ("L2", "squared-L2", "angular")


def semihard_distances(x, distance_metric="L2"):
    """The distance matrix TF Addons uses for ``distance_metric``.

    ``"L2"``: Euclidean; ``"squared-L2"``: squared Euclidean; ``"angular"``:
    ``max(1 − cos, 0)`` between L2-normalised rows. Diagonal is 0.
    """
    check_choice("distance_metric", distance_metric, DISTANCE_METRICS)
    if distance_metric == "L2":
        return pairwise_distances(x)
    if distance_metric == "squared-L2":
        return pairwise_squared_distances(x)
    unit = l2_normalize(x)
    n = ops.shape(x)[0]
    off_diagonal = 1.0 - ops.eye(n, dtype=x.dtype)
    return ops.relu(1.0 - pairwise_similarities(unit)) * off_diagonal


def semi_hard_negative(d_ap, d_an, negatives, empty_value=0.0):
    """FaceNet's semi-hard negative distance, the rule of the module docstring.

    The last axis runs over the negative candidates ``d_an`` (``negatives``
    marks the real ones); ``d_ap`` broadcasts against them. Returns the nearest
    negative farther than the positive, else the farthest negative, else
    ``empty_value``. Shared by :mod:`symm_keras.losses.symm_semihard_triplet`.
    """
    shape = ops.shape(ops.zeros_like(d_ap) + ops.zeros_like(d_an))
    d_an = ops.broadcast_to(d_an, shape)
    negatives = ops.broadcast_to(negatives, shape)
    outside = ops.logical_and(negatives, ops.greater(d_an, d_ap))
    nearest_outside = masked_min(d_an, outside, axis=-1)
    hardest_inside = masked_max(d_an, negatives, axis=-1, empty_value=empty_value)
    return ops.where(masked_any(outside, axis=-1), nearest_outside, hardest_inside)


def _semihard_terms(y_true, y_pred, margin, distance_metric):
    """``(per-sample values (B,), hinge (B, B), positive pairs (B, B))``."""
    margin = check_nonnegative("margin", margin)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    d = semihard_distances(x, distance_metric)
    positive = positive_mask(labels)
    negative = negative_mask(labels)
    # [a, p, n]: the negatives n of anchor a against the positive p.
    empty = ops.expand_dims(ops.min(d, axis=1), 1)  # TF Addons' masked_maximum of an empty set
    semi_hard = semi_hard_negative(ops.expand_dims(d, 2), ops.expand_dims(d, 1), ops.expand_dims(negative, 1), empty)
    hinge = ops.relu(margin + d - semi_hard)
    per_anchor = ops.sum(ops.where(positive, hinge, ops.zeros_like(hinge)), axis=1)
    return per_sample_values(per_anchor, masked_count(positive, dtype=x.dtype)), hinge, positive


def semihard_triplet_loss_parts(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """``{"loss", "hinge", "active_share"}`` of :func:`semihard_triplet_loss`."""
    return hinge_parts(*_semihard_terms(y_true, y_pred, margin, distance_metric))


def semihard_triplet_loss(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """FaceNet semi-hard triplet loss with TF Addons semantics (see module doc).

    Args:
        y_true: integer class labels, shape ``(B,)`` or ``(B, 1)``.
        y_pred: embeddings, shape ``(B, D)``.
        margin: ``m`` (default 1.0, as TF Addons).
        distance_metric: ``"L2"`` (default), ``"squared-L2"`` or ``"angular"``.

    Returns:
        Scalar loss; 0 with zero gradient when the batch has no positive pair.
    """
    return safe_mean(semihard_triplet_loss_per_sample(y_true, y_pred, margin, distance_metric))


def semihard_triplet_loss_per_sample(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """``(B,)`` per-anchor values of :func:`semihard_triplet_loss` (mean = the loss)."""
    return _semihard_terms(y_true, y_pred, margin, distance_metric)[0]


@register
class SemiHardTripletLoss(EmbeddingLoss):
    """FaceNet semi-hard triplet loss, TF Addons semantics; see :func:`semihard_triplet_loss`.

    Args:
        margin: ``m`` (default 1.0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"`` or ``"angular"``.
    """

    batch_layout = "pk"
    images_per_class = None
    zero_without_positives = True
    parts_fn = staticmethod(semihard_triplet_loss_parts)
    summands = ("hinge",)
    diagnostics = ("active_share",)
    parts_prefix = "semihard"

    def __init__(self, margin=1.0, distance_metric="L2", name="semihard_triplet_loss", **kwargs):
        check_nonnegative("margin", margin)
        check_choice("distance_metric", distance_metric, DISTANCE_METRICS)
        super().__init__(
            semihard_triplet_loss_per_sample,
            name=name,
            margin=margin,
            distance_metric=distance_metric,
            **kwargs,
        )
