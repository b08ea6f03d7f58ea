"""Smart Mining losses (Harwood et al., ICCV 2017, Sec. 3.1): ratio triplet + global loss.

Batch layout ``"triplets"`` (the layout of ``symm_keras.data.TripletFeed``):
with ``t`` triplets the batch has ``3t`` rows ``[anchors (t); positives (t);
negatives (t)]``, i.e. rows ``i``, ``t + i`` and ``2t + i`` form triplet ``i``;
``y_true`` holds their class labels. A batch size not divisible by 3 is a
``ValueError`` (a static shape check).

Every labelling is defined, the same eagerly and under ``jit`` on every
backend (the rule of the P×K losses, :mod:`symm_keras.ops.pairs`): triplet
``i`` is *valid* when its anchor and positive share a class and its negative
does not; an invalid triplet (e.g. ``model.fit(x, y, batch_size=24)`` on
ordinary shuffled data) is excluded: its three rows get per-sample value 0
and zero gradient, and every mean below is over the ``n`` valid triplets
(the value is 0 when ``n = 0``). :func:`check_triplet_layout` is an opt-in
eager check for callers that want to insist on a clean batch; the losses do
not call it.

* Ratio triplet loss, eq. (2), margin ``m`` (paper: 0.2)::

      J^t = (1/n) Σ_{valid i} max(0, 1 − ‖a_i − n_i‖ / (‖a_i − p_i‖ + m))

* Global loss, eq. (3) (Kumar et al., CVPR 2016), margin ``t`` (paper: 0.01)::

      J^g = σ²⁺ + σ²⁻ + λ · max(0, μ⁺ − μ⁻ + t),
      d⁺_i = ‖a_i − p_i‖² / 4,   d⁻_i = ‖a_i − n_i‖² / 4

  with means ``μ`` and population variances ``σ²`` over the valid triplets.
  The division by 4 keeps ``d ∈ [0, 1]`` for unit-norm embeddings. (The text
  prints ``d⁺`` without the square, a typo: the paragraph after eq. (3) says
  both are squared distances.) The paper does not give ``λ``; the default is 1.

* Combined: ``J = J^t + w · J^g`` (``w = 1``), the "Triplet + Global" rows.

Embeddings are L2-normalised inside the losses by default (the paper's network
ends with a normalisation layer); pass ``normalize=False`` if the model
already does it.

The training error of Sec. 3.2.4, the share of (valid) triplets with a
non-zero loss (2) (``‖a − n‖ < ‖a − p‖ + m``), is
:func:`triplet_training_error`, and the :class:`TripletTrainingError` metric
accumulates it over an epoch for the adaptive κ controller.

Parts of the combined loss (:func:`smart_mining_loss_parts`, logged as
``smart_mining_ratio_triplet``, ``smart_mining_global``, ...):
``ratio_triplet`` (``J^t``) + ``global`` (``w · J^g``, as it enters the loss)
= loss; the diagnostics ``active_share`` (the batch's training error) and
``valid_share`` (``n / t``, the share of triplets whose labels fit the layout;
1 for every ``TripletFeed`` batch).
"""

import keras
from keras import ops

from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.ops.distances import l2_normalize, safe_sqrt
from symm_keras.ops.labels import concrete_value, flatten_labels
from symm_keras.ops.reductions import masked_count, masked_mean, per_sample_values

TRIPLET_LAYOUT = "triplets"


def check_triplet_layout(labels):
    """Raise ``ValueError`` unless concrete ``labels`` follow the triplet layout.

    Opt-in and eager only (like :func:`symm_keras.ops.pairs.check_pk_layout`):
    it does nothing when the label values are not concrete (under ``jit``),
    and the losses never call it, since they define every layout (module
    docstring). For callers that want a bad batch to stop them.
    """
    values = concrete_value(labels)
    if values is None:
        return
    values = values.reshape(-1)
    t = values.size // 3
    anchors, positives, negatives = values[:t], values[t:2 * t], values[2 * t:]
    bad_pos = [int(i) for i in (anchors != positives).nonzero()[0][:5]]
    bad_neg = [int(i) for i in (anchors == negatives).nonzero()[0][:5]]
    if bad_pos or bad_neg:
        raise ValueError(
            "y_pred must be a triplet batch [anchors; positives; negatives] (rows i, t+i, 2t+i "
            f"form triplet i, t = batch/3 = {t}): "
            + (f"triplets {bad_pos} have a positive of another class than the anchor; " if bad_pos else "")
            + (f"triplets {bad_neg} have a negative of the anchor's class." if bad_neg else "")
        )


def triplet_validity(labels):
    """``(t,)`` boolean: triplet ``i`` has ``y_a = y_p`` and ``y_n ≠ y_a`` (module docstring)."""
    t = ops.shape(labels)[0] // 3
    anchors, positives, negatives = labels[:t], labels[t:2 * t], labels[2 * t:]
    return ops.logical_and(ops.equal(anchors, positives), ops.not_equal(anchors, negatives))


def triplet_distances(y_true, y_pred, normalize=True):
    """``(‖a − p‖², ‖a − n‖², valid)`` of the ``t`` triplets of a batch, each ``(t,)``."""
    y_pred = as_float(y_pred)
    labels = flatten_labels(y_true, y_pred)
    batch = y_pred.shape[0]
    if batch is not None and batch % 3:
        raise ValueError(
            f"a triplet batch [anchors; positives; negatives] needs a batch size divisible by 3, got {batch}."
        )
    if normalize:
        y_pred = l2_normalize(y_pred)
    t = ops.shape(y_pred)[0] // 3
    a, p, n = y_pred[:t], y_pred[t:2 * t], y_pred[2 * t:]
    return (ops.sum(ops.square(a - p), axis=-1), ops.sum(ops.square(a - n), axis=-1),
            triplet_validity(labels))


def _ratio_terms(distances, margin):
    """Eq. (2)'s ``(t,)`` terms (0 for invalid triplets), the validity mask and the violations,
    from :func:`triplet_distances`."""
    if margin <= 0:
        raise ValueError(f"margin must be > 0 (it keeps the ratio finite), got {margin}.")
    pos_sq, neg_sq, valid = distances
    d_pos, d_neg = safe_sqrt(pos_sq), safe_sqrt(neg_sq)
    terms = ops.where(valid, ops.relu(1.0 - d_neg / (d_pos + margin)), ops.zeros_like(d_pos))
    violated = ops.logical_and(valid, ops.less(d_neg, d_pos + margin))
    return terms, valid, violated


def _training_error(valid, violated, dtype="float32"):
    """Share of the valid triplets that violate eq. (2) (0 if none), Sec. 3.2.4."""
    return masked_count(violated, dtype=dtype) / ops.maximum(masked_count(valid, dtype=dtype), 1.0)


def _global_value(distances, margin, weight):
    """Eq. (3) over the valid triplets of :func:`triplet_distances` (0 if none)."""
    pos_sq, neg_sq, valid = distances
    d_pos, d_neg = pos_sq / 4.0, neg_sq / 4.0
    mu_pos, mu_neg = masked_mean(d_pos, valid), masked_mean(d_neg, valid)
    var_pos = masked_mean(ops.square(d_pos - mu_pos), valid)
    var_neg = masked_mean(ops.square(d_neg - mu_neg), valid)
    value = var_pos + var_neg + weight * ops.relu(mu_pos - mu_neg + margin)
    return ops.where(ops.any(valid), value, ops.zeros_like(value))


def ratio_triplet_loss(y_true, y_pred, margin=0.2, normalize=True):
    """Eq. (2): ``mean max(0, 1 − ‖a − n‖ / (‖a − p‖ + m))`` over the valid triplets."""
    terms, valid, _ = _ratio_terms(triplet_distances(y_true, y_pred, normalize), margin)
    return masked_mean(terms, valid)


def ratio_triplet_loss_per_sample(y_true, y_pred, margin=0.2, normalize=True):
    """``(B,)`` per-sample values, mean = :func:`ratio_triplet_loss`.

    Each valid triplet's eq. (2) term is shared equally by its three rows
    (:func:`symm_keras.ops.per_sample_values`); rows of invalid triplets are 0.
    """
    terms, valid, _ = _ratio_terms(triplet_distances(y_true, y_pred, normalize), margin)
    share = terms / 3.0
    rows = ops.concatenate([share, share, share], axis=0)
    return per_sample_values(rows, masked_count(valid, dtype=terms.dtype))


def global_loss(y_true, y_pred, margin=0.01, weight=1.0, normalize=True):
    """Eq. (3): ``σ²⁺ + σ²⁻ + λ·max(0, μ⁺ − μ⁻ + t)`` with ``d = ‖·‖²/4``, over the valid triplets."""
    return _global_value(triplet_distances(y_true, y_pred, normalize), margin, weight)


def smart_mining_loss(y_true, y_pred, triplet_margin=0.2, global_margin=0.01, global_lambda=1.0,
                      global_weight=1.0, normalize=True):
    """``J^t + w · J^g``: ratio triplet loss (2) plus the global loss (3)."""
    return smart_mining_loss_parts(
        y_true, y_pred, triplet_margin, global_margin, global_lambda, global_weight, normalize
    )["loss"]


def smart_mining_loss_parts(y_true, y_pred, triplet_margin=0.2, global_margin=0.01, global_lambda=1.0,
                            global_weight=1.0, normalize=True):
    """``{"loss", "ratio_triplet", "global", "active_share", "valid_share"}`` of :func:`smart_mining_loss`."""
    distances = triplet_distances(y_true, y_pred, normalize)  # once, for both terms
    terms, valid, violated = _ratio_terms(distances, triplet_margin)
    ratio = masked_mean(terms, valid)
    weighted_global = global_weight * _global_value(distances, global_margin, global_lambda)
    triplets = ops.cast(ops.shape(valid)[0], ratio.dtype)
    return {
        "loss": ratio + weighted_global,
        "ratio_triplet": ratio,
        "global": weighted_global,
        "active_share": _training_error(valid, violated, ratio.dtype),
        "valid_share": masked_count(valid, dtype=ratio.dtype) / ops.maximum(triplets, 1.0),
    }


def triplet_training_error(y_true, y_pred, margin=0.2, normalize=True):
    """Share of the valid triplets with a non-zero eq. (2) loss, ``‖a − n‖ < ‖a − p‖ + m`` (0 if none)."""
    _, valid, violated = _ratio_terms(triplet_distances(y_true, y_pred, normalize), margin)
    return _training_error(valid, violated)


@register
class RatioTripletLoss(EmbeddingLoss):
    """Ratio triplet loss, Smart Mining eq. (2); triplet batch layout (see module)."""

    batch_layout = TRIPLET_LAYOUT

    def __init__(self, margin=0.2, normalize=True, name="ratio_triplet_loss", **kwargs):
        super().__init__(ratio_triplet_loss_per_sample, name=name, margin=margin, normalize=normalize, **kwargs)


@register
class GlobalLoss(EmbeddingLoss):
    """Global loss, Smart Mining eq. (3) (Kumar et al. 2016); triplet batch layout.

    A function of the batch's distance means and variances: no per-sample form
    (``sample_weight`` / ``reduction`` other than the default raise).
    """

    batch_layout = TRIPLET_LAYOUT
    per_sample = False

    def __init__(self, margin=0.01, weight=1.0, normalize=True, name="global_loss", **kwargs):
        super().__init__(global_loss, name=name, margin=margin, weight=weight, normalize=normalize, **kwargs)


@register
class SmartMiningLoss(EmbeddingLoss):
    """Ratio triplet loss (2) + ``global_weight`` × global loss (3); triplet batch layout.

    Batch-level like :class:`GlobalLoss` (no per-sample form).
    """

    batch_layout = TRIPLET_LAYOUT
    per_sample = False
    parts_fn = staticmethod(smart_mining_loss_parts)
    summands = ("ratio_triplet", "global")
    diagnostics = ("active_share", "valid_share")
    parts_prefix = "smart_mining"

    def __init__(self, triplet_margin=0.2, global_margin=0.01, global_lambda=1.0, global_weight=1.0,
                 normalize=True, name="smart_mining_loss", **kwargs):
        super().__init__(
            smart_mining_loss,
            name=name,
            triplet_margin=triplet_margin,
            global_margin=global_margin,
            global_lambda=global_lambda,
            global_weight=global_weight,
            normalize=normalize,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="symm_keras")
class TripletTrainingError(keras.metrics.Metric):
    """Training error of Sec. 3.2.4: share of triplets with non-zero loss (2), over the epoch.

    Counts violating triplets and valid triplets across batches (not a mean of
    batch means; invalid triplets, see the module docstring, are not counted),
    so ``result()`` at the end of an epoch is the epoch's error.
    """

    def __init__(self, margin=0.2, normalize=True, name="training_error", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.margin = float(margin)
        self.normalize = bool(normalize)
        self.violations = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="violations")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        _, valid, violated = _ratio_terms(triplet_distances(y_true, y_pred, self.normalize), self.margin)
        self.violations.assign_add(masked_count(violated))
        self.count.assign_add(masked_count(valid))

    def result(self):
        return ops.divide_no_nan(self.violations, self.count)

    def reset_state(self):
        self.violations.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "margin": self.margin, "normalize": self.normalize}
