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
(``l2_reg``, default 0.002, 0 = off). ``alpha`` is in degrees (default 45°).

Parts (:func:`angular_loss_parts`, logged as ``angular_npair``,
``angular_angular``, ``angular_l2``): ``npair`` (``L_npair``, only with
``with_npair``) + ``angular`` (the angular term as it enters the loss:
``angular_weight · L_ang`` when ``with_npair``, else ``L_ang``) + ``l2`` = loss.
"""

import math

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.losses.npair import pair_l2_regularizer, softmax_cross_entropy_diagonal
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pairs import split_anchor_positive


def tan_squared(alpha):
    try:
        degrees = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be an angle in degrees, got {alpha!r}.") from None
    if not 0.0 < degrees < 90.0:
        raise ValueError(f"alpha must be an angle in degrees in (0, 90), got {alpha!r}.")
    return math.tan(math.radians(degrees)) ** 2


def angular_logits(anchors, positives, alpha=45.0):
    """``f^p`` on the diagonal, ``f^n`` off it (Symm eq. 9 / Wang et al. eq. 8)."""
    t = tan_squared(alpha)
    n = ops.shape(anchors)[0]
    eye = ops.eye(n, dtype=anchors.dtype)
    f_p = 2.0 * (1.0 + t) * ops.matmul(anchors, ops.transpose(positives))
    f_n = 4.0 * t * ops.matmul(anchors + positives, ops.transpose(positives))
    return eye * f_p + (1.0 - eye) * f_n


def angular_loss_parts(
    y_true, y_pred, alpha=45.0, l2_reg=0.002, with_npair=False, angular_weight=2.0
):
    """``{"loss", "npair", "angular", "l2"}`` of :func:`angular_loss` (their sum is ``loss``);
    ``npair`` only with ``with_npair``."""
    tan_squared(alpha)
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    angular_weight = check_nonnegative("angular_weight", angular_weight)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    anchors, positives, _ = split_anchor_positive(labels, x)
    angular = softmax_cross_entropy_diagonal(angular_logits(anchors, positives, alpha))
    l2 = pair_l2_regularizer(anchors, positives, l2_reg)
    if not with_npair:
        return {"loss": angular + l2, "angular": angular, "l2": l2}
    npair = softmax_cross_entropy_diagonal(ops.matmul(anchors, ops.transpose(positives)))
    angular = angular_weight * angular
    return {"loss": npair + angular + l2, "npair": npair, "angular": angular, "l2": l2}


def angular_loss(
    y_true, y_pred, alpha=45.0, l2_reg=0.002, with_npair=False, angular_weight=2.0
):
    """Angular loss of Symm eq. 9 (released-code formulation), optionally + N-pair.

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice.
        y_pred: raw embeddings ``(B, D)``.
        alpha: angle bound ``α`` in degrees, ``0 < α < 90`` (default 45).
        l2_reg: ``λ`` of the official L2 term (default 0.002; 0 = off).
        with_npair: return ``L_npair + angular_weight · L_ang`` (Wang et al. Sec. 4.3).
        angular_weight: weight of ``L_ang`` when ``with_npair`` (default 2).

    Returns:
        Scalar loss.

    Raises:
        ValueError: bad ``alpha``, or the batch is not P×2.
    """
    return angular_loss_parts(y_true, y_pred, alpha, l2_reg, with_npair, angular_weight)["loss"]


@register
class AngularLoss(EmbeddingLoss):
    """Angular loss (Symm eq. 9); see :func:`angular_loss`.

    Args:
        alpha: angle bound in degrees (default 45).
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
        alpha=45.0,
        l2_reg=0.002,
        with_npair=False,
        angular_weight=2.0,
        name="angular_loss",
        **kwargs,
    ):
        tan_squared(alpha)
        check_nonnegative("l2_reg", l2_reg)
        check_nonnegative("angular_weight", angular_weight)
        super().__init__(
            angular_loss,
            name=name,
            alpha=alpha,
            l2_reg=l2_reg,
            with_npair=bool(with_npair),
            angular_weight=angular_weight,
            **kwargs,
        )
