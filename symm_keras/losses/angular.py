"""Angular loss (Wang et al. ICCV 2017; Symm paper eq. 9).

P×2 batch, anchors ``a_i`` and positives ``p_i`` paired by label as in
:mod:`symm_keras.losses.npair`. With ``t = tan²α``::

    f^p_i    = 2 (1 + t) a_i · p_i
    f^n_ij   = 4 t (a_i + p_i) · p_j          (j ≠ i; the negative of class j is p_j)
    L_ang    = 1/P Σ_i log(1 + Σ_{j≠i} exp(f^n_ij − f^p_i))     (eq. 9)

computed, like the released code (Wang et al.'s ``angular_mc_loss``, reused by
the Symm code), as a softmax cross-entropy against ``i`` over logits that hold
``f^p`` on the diagonal and ``f^n`` off it. ``with_npair=True`` gives Wang et
al.'s combined objective ``L_npair + angular_weight · L_ang`` (λ = 2 there).
The official L2 term ``0.25·λ·(mean‖a‖² + mean‖p‖²)`` is added once
(``l2_reg``, default 0.002, 0 = off). ``angle`` is the angle bound ``α`` of eq. 9 in degrees (default 45°).

Parts (:func:`angular_loss_parts`, logged as ``angular_npair``,
``angular_angular``, ``angular_l2``): ``npair`` (``L_npair``, only with
``with_npair``) + ``angular`` (the angular term as it enters the loss:
``angular_weight · L_ang`` when ``with_npair``, else ``L_ang``) + ``l2`` = loss.
Batch layouts and per-sample values as for :mod:`symm_keras.losses.npair`.
"""

import math

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, register
from symm_keras.losses.npair import pair_l2_terms, pair_per_sample, paired_batch, softmax_cross_entropy_diagonal
from symm_keras.ops.reductions import masked_mean


def tan_squared(angle):
    try:
        degrees = float(angle)
    except (TypeError, ValueError):
        raise ValueError(f"angle must be in degrees, got {angle!r}.") from None
    if not 0.0 < degrees < 90.0:
        raise ValueError(f"angle must be in degrees in (0, 90), got {angle!r}.")
    return math.tan(math.radians(degrees)) ** 2


def angular_coefficients(angle):
    """``(2(1 + t), 4t)`` with ``t = tan²α``: the factors of ``f^p`` and ``f^n`` (eq. 9)."""
    t = tan_squared(angle)
    return 2.0 * (1.0 + t), 4.0 * t


def angular_logits(anchors, positives, angle=45.0):
    """``f^p`` on the diagonal, ``f^n`` off it (Symm eq. 9 / Wang et al. eq. 8)."""
    c_p, c_n = angular_coefficients(angle)
    n = ops.shape(anchors)[0]
    eye = ops.eye(n, dtype=anchors.dtype)
    f_p = c_p * ops.matmul(anchors, ops.transpose(positives))
    f_n = c_n * ops.matmul(anchors + positives, ops.transpose(positives))
    return eye * f_p + (1.0 - eye) * f_n


def _angular_terms(y_true, y_pred, angle, l2_reg, with_npair, angular_weight):
    """``(pairs, {term: value per pair})``: ``npair`` (only ``with_npair``), ``angular``, ``l2``."""
    tan_squared(angle)
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    angular_weight = check_nonnegative("angular_weight", angular_weight)
    pairs, anchors, positives = paired_batch(y_true, y_pred)
    terms = {}
    angular = softmax_cross_entropy_diagonal(angular_logits(anchors, positives, angle), pairs.valid)
    if with_npair:
        logits = ops.matmul(anchors, ops.transpose(positives))
        terms["npair"] = softmax_cross_entropy_diagonal(logits, pairs.valid)
        angular = angular_weight * angular
    terms["angular"] = angular
    terms["l2"] = pair_l2_terms(anchors, positives, l2_reg)
    return pairs, terms


def angular_loss_parts(
    y_true, y_pred, angle=45.0, l2_reg=0.002, with_npair=False, angular_weight=2.0
):
    """``{"loss", "npair", "angular", "l2"}`` of :func:`angular_loss` (their sum is ``loss``);
    ``npair`` only with ``with_npair``."""
    pairs, terms = _angular_terms(y_true, y_pred, angle, l2_reg, with_npair, angular_weight)
    parts = {name: masked_mean(value, pairs.valid) for name, value in terms.items()}
    parts["loss"] = masked_mean(sum(terms.values()), pairs.valid)
    return parts


def angular_loss_per_sample(
    y_true, y_pred, angle=45.0, l2_reg=0.002, with_npair=False, angular_weight=2.0
):
    """``(B,)`` per-sample values of :func:`angular_loss` (their mean is the loss)."""
    pairs, terms = _angular_terms(y_true, y_pred, angle, l2_reg, with_npair, angular_weight)
    return pair_per_sample(sum(terms.values()), pairs, y_pred)


def angular_loss(
    y_true, y_pred, angle=45.0, l2_reg=0.002, with_npair=False, angular_weight=2.0
):
    """Angular loss of Symm eq. 9 (released-code formulation), optionally + N-pair.

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice.
        y_pred: raw embeddings ``(B, D)``.
        angle: angle bound ``α`` in degrees, ``0 < α < 90`` (default 45).
        l2_reg: ``λ`` of the official L2 term (default 0.002; 0 = off).
        with_npair: return ``L_npair + angular_weight · L_ang`` (Wang et al. Sec. 4.3).
        angular_weight: weight of ``L_ang`` when ``with_npair`` (default 2).

    Returns:
        Scalar loss (any layout: pairs as in :mod:`symm_keras.losses.npair`).

    Raises:
        ValueError: bad ``angle``.
    """
    return angular_loss_parts(y_true, y_pred, angle, l2_reg, with_npair, angular_weight)["loss"]


@register
class AngularLoss(EmbeddingLoss):
    """Angular loss (Symm eq. 9); see :func:`angular_loss`.

    Args:
        angle: angle bound in degrees (default 45).
        l2_reg: official L2 term weight ``λ`` (default 0.002, 0 = off).
        with_npair: add the N-pair loss (default False).
        angular_weight: weight of the angular term when ``with_npair`` (default 2).
    """

    batch_layout = "pk"
    images_per_class = 2
    zero_without_positives = True
    parts_fn = staticmethod(angular_loss_parts)
    parts_prefix = "angular"

    @property
    def summands(self):
        """``npair`` is a term only of the combined objective (``with_npair``)."""
        return ("npair", "angular", "l2") if self._params["with_npair"] else ("angular", "l2")

    def __init__(
        self,
        angle=45.0,
        l2_reg=0.002,
        with_npair=False,
        angular_weight=2.0,
        name="angular_loss",
        **kwargs,
    ):
        tan_squared(angle)
        check_nonnegative("l2_reg", l2_reg)
        check_nonnegative("angular_weight", angular_weight)
        super().__init__(
            angular_loss_per_sample,
            name=name,
            angle=angle,
            l2_reg=l2_reg,
            with_npair=bool(with_npair),
            angular_weight=angular_weight,
            **kwargs,
        )
