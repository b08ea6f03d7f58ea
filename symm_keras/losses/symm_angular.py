"""Angular loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, eq. 10).

P×2 batch paired by label; the four point sets ``A, P, A', P'`` (original and
mirrored anchors/positives) and every dot product between them come from ONE
matrix product (:mod:`symm_keras.ops.pooling`). With ``t = tan²α`` (α in
degrees, default 45°), eq. 9's logits are ``f^p_ij = 2(1 + t) x_i·x_j`` and
``f^n_ijk = 4t (x_i + x_j)·x_k``.

``pairs="official"`` (default) — the released code: for each of the 12
ordered pairs ``(X, Y)`` of distinct sets the angular logit matrix
``M^{XY}`` with ``2(1 + t) x_i·y_i`` on the diagonal and ``4t (x_i + y_i)·y_j``
off it; the logits are the elementwise maximum over the 12, followed by a
softmax cross-entropy against the diagonal.

``pairs="paper"`` — eq. 10 literally: the positive logit is
``f^p = 2(1 + t) a_i·p_i`` and each negative class ``k`` contributes the
largest ``f^n_pqr`` over the 24 triplets ``Ñ(l_i, l_k)``: an unordered pair
``{p, q}`` of the four points of class ``i`` (6) and one of the four points
``r`` of class ``k``::

    L = 1/|P| Σ_i log(1 + Σ_{k≠i} exp(max_{(p,q,r)∈Ñ(l_i,l_k)} f^n_pqr − f^p_ij))

``top_k > 1`` (paper mode only) keeps the ``k`` largest candidates per class
pair as separate terms. Both add the released
``0.25·λ·(mean‖a‖² + mean‖p‖²)`` on raw features (``l2_reg``, default 0.002).
Parts (:func:`symm_angular_loss_parts`, logged as ``symm_angular_angular``,
``symm_angular_l2``): ``angular`` (the pooled cross-entropy of eq. 10 / the
released code) + ``l2`` = loss. As for :mod:`symm_keras.losses.symm_npair`, the official pooled positive logit
does not penalise anti-parallel pairs, so it trains slowly from random
initialisation (see docs/losses.md). Synthesis options, batch layouts and
per-sample values: :mod:`symm_keras.losses.symm_base`.
"""

import itertools

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.angular import tan_squared
from symm_keras.losses.base import register
from symm_keras.losses.npair import pair_l2_terms
from symm_keras.losses.symm_base import SymmLoss, class_per_sample, symm_batch
from symm_keras.losses.symm_npair import check_symm_pairs
from symm_keras.ops.pooling import PAPER_PAIRS, gather_set_pairs, pool_hardest
from symm_keras.ops.reductions import masked_mean, safe_mean
from symm_keras.ops.softmax_pairs import npair_cross_entropy
from symm_keras.ops.synthesis import class_pair_negatives

# eq. 10: unordered pairs {p, q} of class-i sets × negative set r (24 triplets).
PAPER_TRIPLETS = tuple(
    (p, q, r) for (p, q) in itertools.combinations(range(4), 2) for r in range(4)
)
# Released code: ordered pairs (X, Y) of distinct sets (12).
OFFICIAL_ORDERED_PAIRS = tuple(itertools.permutations(range(4), 2))


def _take_last(x, index):
    return ops.take(x, ops.convert_to_tensor(index, dtype="int32"), axis=-1)


def symm_angular_logits(gram, angle=45.0, pairs="official", top_k=1):
    """``(positive_logits (N,), negative_logits (N, N[, top_k]))`` of Symm + angular.

    ``gram`` is the ``(4, N, 4, N)`` Gram tensor of ``A, P, A', P'``
    (:func:`symm_keras.ops.pooling.synthesis_gram`).
    """
    t = tan_squared(angle)
    c_p, c_n = 2.0 * (1.0 + t), 4.0 * t
    # dots[i, k, 4s + u] = z_{s,i} · z_{u,k}, from one matrix product.
    dots = gather_set_pairs(gram, PAPER_PAIRS)
    if pairs == "official":
        xy = _take_last(dots, [4 * s + u for s, u in OFFICIAL_ORDERED_PAIRS])
        yy = _take_last(dots, [5 * u for _, u in OFFICIAL_ORDERED_PAIRS])
        n = ops.shape(dots)[0]
        diagonal = ops.expand_dims(ops.cast(ops.eye(n), "bool"), -1)
        candidates = ops.where(diagonal, c_p * xy, c_n * (xy + yy))
        logits = ops.max(candidates, axis=-1)
        return ops.diagonal(logits), logits
    first = _take_last(dots, [4 * p + r for p, _, r in PAPER_TRIPLETS])
    second = _take_last(dots, [4 * q + r for _, q, r in PAPER_TRIPLETS])
    negatives, _ = pool_hardest(c_n * (first + second), hardest="max", top_k=top_k)
    positive = c_p * ops.diagonal(dots[:, :, 1])  # a_i · p_i
    return positive, negatives


def _symm_angular_terms(y_true, y_pred, angle, pairs, l2_reg, top_k, synthesis):
    """``(batch, x, angular cross-entropy per class, L2 term per class)``."""
    tan_squared(angle)
    check_symm_pairs(pairs, top_k)
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    batch, x = symm_batch(y_true, y_pred, synthesis)
    positive, negative = symm_angular_logits(batch.gram, angle=angle, pairs=pairs, top_k=top_k)
    negatives = class_pair_negatives(batch.pair_labels, batch.pair_valid)
    angular = npair_cross_entropy(positive, negative, negatives, anchor_mask=batch.pair_valid)
    l2 = ops.where(batch.pair_valid, pair_l2_terms(batch.anchors, batch.positives, l2_reg), 0.0)
    return batch, x, angular, l2


def symm_angular_loss_parts(y_true, y_pred, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """``{"loss", "angular", "l2"}`` of :func:`symm_angular_loss`: ``loss = angular + l2``."""
    batch, _, angular, l2 = _symm_angular_terms(y_true, y_pred, angle, pairs, l2_reg, top_k, synthesis)
    valid = batch.pair_valid
    return {
        "loss": masked_mean(angular + l2, valid),
        "angular": masked_mean(angular, valid),
        "l2": masked_mean(l2, valid),
    }


def symm_angular_loss_per_sample(
    y_true, y_pred, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis
):
    """``(B,)`` per-sample values of :func:`symm_angular_loss` (their mean is the loss)."""
    batch, x, angular, l2 = _symm_angular_terms(y_true, y_pred, angle, pairs, l2_reg, top_k, synthesis)
    return class_per_sample(angular + l2, batch, ops.sum(ops.cast(batch.pair_valid, x.dtype)), x)


def symm_angular_loss(y_true, y_pred, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """Symm + angular loss (eq. 10 or the released code), see the module docstring.

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice
            (other layouts: :mod:`symm_keras.losses.symm_base`).
        y_pred: raw embeddings ``(B, D)``.
        angle: the angular loss's ``α`` in degrees, ``0 < α < 90`` (default 45),
            as ``AngularLoss(angle=...)``.
        pairs: ``"official"`` (default, 12 ordered set pairs) or ``"paper"``.
        l2_reg: ``λ`` of the L2 term (default 0.002, 0 = off).
        top_k: candidates kept per class pair, ``pairs="paper"`` only.
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``,
            ``force_norm`` (:mod:`symm_keras.losses.symm_base`).
    """
    return safe_mean(symm_angular_loss_per_sample(y_true, y_pred, angle, pairs, l2_reg, top_k, **synthesis))


@register
class SymmAngularLoss(SymmLoss):
    """Symm + angular loss (eq. 10 / released code); see :func:`symm_angular_loss`.

    Args:
        angle: angular bound ``α`` in degrees (default 45).
        pairs: ``"official"`` (default) or ``"paper"``.
        l2_reg: official L2 term weight ``λ`` (default 0.002, 0 = off).
        top_k: candidates per class pair (default 1; >1 needs ``"paper"``).
        **kwargs: synthesis options (default: the symmetric point), ``reduction``, ``dtype``.
    """

    batch_layout = "pk"
    zero_without_positives = True
    parts_fn = staticmethod(symm_angular_loss_parts)
    summands = ("angular", "l2")
    parts_prefix = "symm_angular"

    def __init__(self, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, name="symm_angular_loss", **kwargs):
        tan_squared(angle)
        check_symm_pairs(pairs, top_k)
        check_nonnegative("l2_reg", l2_reg)
        super().__init__(
            symm_angular_loss_per_sample, name, angle=angle, pairs=pairs, l2_reg=l2_reg, top_k=top_k, **kwargs
        )
