"""Smart Mining losses (Harwood et al., ICCV 2017, Sec. 3.1): ratio triplet + global loss.

Batch layout ``"triplets"`` (the layout of ``symm_keras.data.TripletFeed``):
with ``t`` triplets the batch has ``3t`` rows ``[anchors (t); positives (t);
negatives (t)]``, i.e. rows ``i``, ``t + i`` and ``2t + i`` form triplet ``i``;
``y_true`` holds their class labels. Whenever the labels are concrete the
layout is checked (anchor and positive share a class, the negative does not).

* Ratio triplet loss, eq. (2), margin ``m`` (paper: 0.2)::

      J^t = mean_i max(0, 1 − ‖a_i − n_i‖ / (‖a_i − p_i‖ + m))

* Global loss, eq. (3) (Kumar et al., CVPR 2016), margin ``t`` (paper: 0.01)::

      J^g = σ²⁺ + σ²⁻ + λ · max(0, μ⁺ − μ⁻ + t),
      d⁺_i = ‖a_i − p_i‖² / 4,   d⁻_i = ‖a_i − n_i‖² / 4

  with means ``μ`` and population variances ``σ²`` over the batch. The division
  by 4 keeps ``d ∈ [0, 1]`` for unit-norm embeddings. (The text prints ``d⁺``
  without the square, a typo: the paragraph after eq. (3) says both are
  squared distances.) The paper does not give ``λ``; the default is 1.

* Combined: ``J = J^t + w · J^g`` (``w = 1``), the "Triplet + Global" rows.

Embeddings are L2-normalised inside the losses by default (the paper's network
ends with a normalisation layer); pass ``normalize=False`` if the model
already does it.

The training error of Sec. 3.2.4, the share of triplets with a non-zero loss
(2) (``‖a − n‖ < ‖a − p‖ + m``), is :func:`triplet_training_error`, and the
:class:`TripletTrainingError` metric accumulates it over an epoch for the
adaptive κ controller.

Parts of the combined loss (:func:`smart_mining_loss_parts`, logged as
``smart_mining_ratio_triplet``, ``smart_mining_global``): ``ratio_triplet``
(``J^t``) + ``global`` (``w · J^g``, as it enters the loss) = loss; the
diagnostic ``active_share`` is the batch's training error.
"""

import keras
from keras import ops

from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.ops.distances import l2_normalize, safe_sqrt
from symm_keras.ops.labels import concrete_value, flatten_labels

TRIPLET_LAYOUT = "triplets"


def check_triplet_layout(labels):
    """Raise ``ValueError`` unless concrete ``labels`` follow the triplet layout."""
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


def split_triplets(y_true, y_pred, normalize=True):
    """Validate a triplet batch and return ``(anchors, positives, negatives)``."""
    y_pred = as_float(y_pred)
    labels = flatten_labels(y_true, y_pred)
    batch = y_pred.shape[0]
    if batch is not None and batch % 3:
        raise ValueError(
            f"a triplet batch [anchors; positives; negatives] needs a batch size divisible by 3, got {batch}."
        )
    check_triplet_layout(labels)
    if normalize:
        y_pred = l2_normalize(y_pred)
    t = ops.shape(y_pred)[0] // 3
    return y_pred[:t], y_pred[t:2 * t], y_pred[2 * t:]


def _squared_distances(x, y):
    return ops.sum(ops.square(x - y), axis=-1)


def ratio_triplet_loss(y_true, y_pred, margin=0.2, normalize=True):
    """Eq. (2): ``mean max(0, 1 − ‖a − n‖ / (‖a − p‖ + m))`` over the triplets."""
    return ops.mean(ratio_triplet_loss_per_sample(y_true, y_pred, margin, normalize))


def ratio_triplet_loss_per_sample(y_true, y_pred, margin=0.2, normalize=True):
    """``(B,)``: each triplet's eq. (2) term on its three rows (mean = :func:`ratio_triplet_loss`)."""
    if margin <= 0:
        raise ValueError(f"margin must be > 0 (it keeps the ratio finite), got {margin}.")
    a, p, n = split_triplets(y_true, y_pred, normalize)
    d_pos = safe_sqrt(_squared_distances(a, p))
    d_neg = safe_sqrt(_squared_distances(a, n))
    per_triplet = ops.relu(1.0 - d_neg / (d_pos + margin))
    return ops.concatenate([per_triplet, per_triplet, per_triplet], axis=0)


def global_loss(y_true, y_pred, margin=0.01, weight=1.0, normalize=True):
    """Eq. (3): ``σ²⁺ + σ²⁻ + λ·max(0, μ⁺ − μ⁻ + t)`` with ``d = ‖·‖²/4``."""
    a, p, n = split_triplets(y_true, y_pred, normalize)
    d_pos = _squared_distances(a, p) / 4.0
    d_neg = _squared_distances(a, n) / 4.0
    mu_pos, mu_neg = ops.mean(d_pos), ops.mean(d_neg)
    var_pos = ops.mean(ops.square(d_pos - mu_pos))
    var_neg = ops.mean(ops.square(d_neg - mu_neg))
    return var_pos + var_neg + weight * ops.relu(mu_pos - mu_neg + margin)


def smart_mining_loss(y_true, y_pred, triplet_margin=0.2, global_margin=0.01, global_lambda=1.0,
                      global_weight=1.0, normalize=True):
    """``J^t + w · J^g``: ratio triplet loss (2) plus the global loss (3)."""
    return ratio_triplet_loss(y_true, y_pred, triplet_margin, normalize) + global_weight * global_loss(
        y_true, y_pred, global_margin, global_lambda, normalize
    )


def smart_mining_loss_parts(y_true, y_pred, triplet_margin=0.2, global_margin=0.01, global_lambda=1.0,
                            global_weight=1.0, normalize=True):
    """``{"loss", "ratio_triplet", "global", "active_share"}`` of :func:`smart_mining_loss`."""
    ratio = ratio_triplet_loss(y_true, y_pred, triplet_margin, normalize)
    weighted_global = global_weight * global_loss(y_true, y_pred, global_margin, global_lambda, normalize)
    return {
        "loss": ratio + weighted_global,
        "ratio_triplet": ratio,
        "global": weighted_global,
        "active_share": ops.cast(triplet_training_error(y_true, y_pred, triplet_margin, normalize), ratio.dtype),
    }


def triplet_training_error(y_true, y_pred, margin=0.2, normalize=True):
    """Share of triplets with a non-zero eq. (2) loss: ``‖a − n‖ < ‖a − p‖ + m``."""
    a, p, n = split_triplets(y_true, y_pred, normalize)
    d_pos = safe_sqrt(_squared_distances(a, p))
    d_neg = safe_sqrt(_squared_distances(a, n))
    return ops.mean(ops.cast(ops.less(d_neg, d_pos + margin), "float32"))


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
    diagnostics = ("active_share",)
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

    Counts violating triplets and triplets across batches (not a mean of batch
    means), so ``result()`` at the end of an epoch is the epoch's error.
    """

    def __init__(self, margin=0.2, normalize=True, name="training_error", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.margin = float(margin)
        self.normalize = bool(normalize)
        self.violations = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="violations")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        a, p, n = split_triplets(y_true, y_pred, self.normalize)
        d_pos = safe_sqrt(_squared_distances(a, p))
        d_neg = safe_sqrt(_squared_distances(a, n))
        violated = ops.cast(ops.less(d_neg, d_pos + self.margin), "float32")
        self.violations.assign_add(ops.sum(violated))
        self.count.assign_add(ops.cast(ops.shape(violated)[0], "float32"))

    def result(self):
        return ops.divide_no_nan(self.violations, self.count)

    def reset_state(self):
        self.violations.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "margin": self.margin, "normalize": self.normalize}
