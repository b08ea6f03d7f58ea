"""Contrastive loss (Chopra et al. 2005; Hadsell et al. 2006, eq. 4).

Over every pair of distinct batch entries ``(i, j)``, with Euclidean distance
``D_ij = ‖x_i − x_j‖``::

    L = 1/|Q| Σ_{(i,j)∈Q} ½ [ y_ij D_ij² + (1 − y_ij) [m − D_ij]_+² ]

where ``Q`` is the set of unordered pairs ``i < j``, ``y_ij = 1`` for a pair of
the same class and ``0`` otherwise. The Symmetrical Synthesis paper cites it as
the classic pair loss (Sec. 1). Negative pairs contribute even when the batch
has no positive pair, so this loss is *not* 0 without positives.

Per sample (:func:`contrastive_loss_per_sample`): each pair's term is shared
equally by its two rows, scaled so that the batch mean is ``L``.

Parts (:func:`contrastive_loss_parts`, logged as ``contrastive_positive``,
``contrastive_negative``, ``contrastive_active_share``): the positive-pair
term + the negative-pair term (each already divided by ``|Q|``) = loss, and the
share of negative pairs closer than the margin (non-zero hinge).
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, active_share, as_float, register
from symm_keras.ops.distances import pairwise_squared_distances, safe_sqrt
from symm_keras.ops.labels import flatten_labels, negative_mask, positive_mask
from symm_keras.ops.reductions import masked_count, per_sample_values, safe_mean


def _contrastive_per_sample(positive, negative, d2, negative_hinge, pairs):
    # Ordered pairs count every unordered pair twice; the ratio is unchanged.
    per_pair = positive * d2 + negative * ops.square(negative_hinge)
    return per_sample_values(0.5 * ops.sum(per_pair, axis=1), pairs)


def contrastive_loss_parts(y_true, y_pred, margin=1.0):
    """``{"loss", "positive", "negative", "active_share"}`` of :func:`contrastive_loss`.

    ``positive + negative = loss``; ``active_share``: negative pairs with ``D < m``.
    """
    margin = check_nonnegative("margin", margin)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    d2 = pairwise_squared_distances(x)
    d = safe_sqrt(d2)
    positive_pairs, negative_pairs = positive_mask(labels), negative_mask(labels)
    positive = ops.cast(positive_pairs, x.dtype)
    negative = ops.cast(negative_pairs, x.dtype)
    negative_hinge = ops.relu(margin - d)
    pairs = masked_count(ops.logical_or(positive_pairs, negative_pairs), dtype=x.dtype)
    scale = 0.5 / ops.maximum(pairs, 1.0)
    positive_term = ops.sum(positive * d2) * scale
    negative_term = ops.sum(negative * ops.square(negative_hinge)) * scale
    return {
        "loss": safe_mean(_contrastive_per_sample(positive, negative, d2, negative_hinge, pairs)),
        "positive": positive_term,
        "negative": negative_term,
        "active_share": active_share(negative_hinge, negative_pairs),
    }


def contrastive_loss(y_true, y_pred, margin=1.0):
    """Contrastive loss of a batch, averaged over all pairs ``i < j``.

    Args:
        y_true: integer class labels, shape ``(B,)`` or ``(B, 1)``.
        y_pred: embeddings, shape ``(B, D)``.
        margin: ``m``, the distance beyond which negative pairs cost nothing.

    Returns:
        Scalar loss (0 for a batch of fewer than two entries).
    """
    return safe_mean(contrastive_loss_per_sample(y_true, y_pred, margin))


def contrastive_loss_per_sample(y_true, y_pred, margin=1.0):
    """``(B,)`` per-sample values of :func:`contrastive_loss` (their mean is the loss)."""
    margin = check_nonnegative("margin", margin)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    d2 = pairwise_squared_distances(x)
    positive_pairs, negative_pairs = positive_mask(labels), negative_mask(labels)
    pairs = masked_count(ops.logical_or(positive_pairs, negative_pairs), dtype=x.dtype)
    return _contrastive_per_sample(
        ops.cast(positive_pairs, x.dtype),
        ops.cast(negative_pairs, x.dtype),
        d2,
        ops.relu(margin - safe_sqrt(d2)),
        pairs,
    )


@register
class ContrastiveLoss(EmbeddingLoss):
    """Contrastive loss (Hadsell et al. 2006 eq. 4); see :func:`contrastive_loss`.

    Args:
        margin: ``m`` (default 1.0), in units of Euclidean distance.
    """

    batch_layout = "pk"
    images_per_class = None
    zero_without_positives = False
    parts_fn = staticmethod(contrastive_loss_parts)
    summands = ("positive", "negative")
    diagnostics = ("active_share",)
    parts_prefix = "contrastive"

    def __init__(self, margin=1.0, name="contrastive_loss", **kwargs):
        check_nonnegative("margin", margin)
        super().__init__(contrastive_loss_per_sample, name=name, margin=margin, **kwargs)
