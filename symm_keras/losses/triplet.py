"""Triplet loss over all valid triplets of a batch (Symm paper eq. 3).

Weinberger & Saul (2009), as written in Gu & Ko (AAAI 2020), eq. 3::

    L = 1/|P| Σ_{(i,j)∈P} Σ_{k: l_k≠l_i} [ D_ij² − D_ik² + m ]_+

with ``P`` the ordered positive pairs ``(i, j)``, ``i ≠ j``, ``l_i = l_j``;
``D`` the Euclidean distance (the paper uses L2-normalised embeddings: put an
L2-normalisation at the end of the model); ``m`` the margin.

``average="pairs"`` (default) divides by ``|P|`` exactly as eq. 3 does;
``average="triplets"`` divides by the number of valid triplets
``|{(i, j, k)}|`` instead (the "batch-all" mean), ``average="nonzero"`` by the
number of triplets with a non-zero hinge (pytorch-metric-learning's
``AvgNonZeroReducer``). ``squared=False`` uses ``D`` instead of ``D²`` (PML's
``TripletMarginLoss`` and TF Addons use Euclidean distances; see
docs/migrating.md). No positive pair → 0.

Per sample (:func:`triplet_loss_per_sample`, what the class returns before
Keras's reduction): row ``i`` holds its anchor terms ``Σ_{j,k}`` times
``B / count``, so the mean over the batch is ``L``.

Parts (:func:`triplet_loss_parts`): ``hinge`` (the loss itself) and the
diagnostic ``active_share`` (logged as ``triplet_active_share``): the share of
valid triplets ``(i, j, k)`` whose hinge is non-zero.
"""

from keras import ops

from symm_keras.losses._validation import check_choice, check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, hinge_parts, register
from symm_keras.ops.distances import pairwise_squared_distances, safe_sqrt
from symm_keras.ops.labels import flatten_labels, negative_mask, positive_mask
from symm_keras.ops.reductions import masked_count, per_sample_values, safe_mean

TRIPLET_AVERAGES = ("pairs", "triplets", "nonzero")


def _triplet_terms(y_true, y_pred, margin, average, squared):
    """``(per-sample values (B,), hinge (B, B, B), valid (B, B, B))`` of eq. 3."""
    margin = check_nonnegative("margin", margin)
    check_choice("average", average, TRIPLET_AVERAGES)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    d = pairwise_squared_distances(x)
    if not squared:
        d = safe_sqrt(d)
    positive = positive_mask(labels)
    negative = negative_mask(labels)
    # valid[i, j, k]: (i, j) positive pair and k a negative of i.
    valid = ops.logical_and(ops.expand_dims(positive, 2), ops.expand_dims(negative, 1))
    hinge = ops.relu(ops.expand_dims(d, 2) - ops.expand_dims(d, 1) + margin)
    per_anchor = ops.sum(ops.where(valid, hinge, ops.zeros_like(hinge)), axis=(1, 2))
    if average == "pairs":
        count = masked_count(positive, dtype=x.dtype)
    elif average == "triplets":
        count = masked_count(valid, dtype=x.dtype)
    else:
        count = masked_count(ops.logical_and(valid, ops.greater(ops.stop_gradient(hinge), 0.0)), dtype=x.dtype)
    return per_sample_values(per_anchor, count), hinge, valid


def triplet_loss_parts(y_true, y_pred, margin=0.2, average="pairs", squared=True):
    """``{"loss", "hinge", "active_share"}`` of :func:`triplet_loss` (``hinge`` = ``loss``)."""
    return hinge_parts(*_triplet_terms(y_true, y_pred, margin, average, squared))


def triplet_loss(y_true, y_pred, margin=0.2, average="pairs", squared=True):
    """Triplet loss of Symm eq. 3 over every valid triplet in the batch.

    Args:
        y_true: integer class labels, shape ``(B,)`` or ``(B, 1)``.
        y_pred: embeddings, shape ``(B, D)``.
        margin: ``m`` in squared-distance units (default 0.2).
        average: ``"pairs"`` (÷|P|, eq. 3), ``"triplets"`` (÷ #valid triplets)
            or ``"nonzero"`` (÷ #triplets with a non-zero hinge).
        squared: ``D²`` (default, eq. 3) or ``D`` (``False``).

    Returns:
        Scalar loss; 0 with zero gradient when the batch has no positive pair
        or no negative.
    """
    return safe_mean(triplet_loss_per_sample(y_true, y_pred, margin, average, squared))


def triplet_loss_per_sample(y_true, y_pred, margin=0.2, average="pairs", squared=True):
    """``(B,)`` per-anchor values of :func:`triplet_loss` (their mean is the loss)."""
    return _triplet_terms(y_true, y_pred, margin, average, squared)[0]


@register
class TripletLoss(EmbeddingLoss):
    """All-triplets loss of Symm eq. 3; see :func:`triplet_loss`.

    Args:
        margin: ``m`` (default 0.2) in squared Euclidean distance.
        average: ``"pairs"`` (default, eq. 3), ``"triplets"`` or ``"nonzero"``.
        squared: squared distances (default, eq. 3) or Euclidean (``False``).
    """

    batch_layout = "pk"
    images_per_class = None
    zero_without_positives = True
    parts_fn = staticmethod(triplet_loss_parts)
    summands = ("hinge",)
    diagnostics = ("active_share",)
    parts_prefix = "triplet"

    def __init__(self, margin=0.2, average="pairs", squared=True, name="triplet_loss", **kwargs):
        check_nonnegative("margin", margin)
        check_choice("average", average, TRIPLET_AVERAGES)
        super().__init__(
            triplet_loss_per_sample, name=name, margin=margin, average=average, squared=bool(squared), **kwargs
        )
