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
pair as separate terms. Both add the released ``0.25·λ·(mean‖a‖² + mean‖p‖²)``
on raw features (``l2_reg``, default 0.002). Parts
(:func:`symm_angular_loss_parts`, logged as ``symm_angular_angular``,
``symm_angular_l2``): ``angular`` (the pooled cross-entropy of eq. 10 / the
released code) + ``l2`` = loss. As for :mod:`symm_keras.losses.symm_npair`, the
official pooled positive logit does not penalise anti-parallel pairs, so it
trains slowly from random initialisation (see docs/losses.md). Synthesis
options, batch layouts and per-sample values:
:mod:`symm_keras.losses.symm_base`.

Why triplets, not the shared pair transform
(:func:`symm_keras.losses.symm_base.symm_pairs`): a candidate ``f^n_pqr =
4t (x_p·x_r + x_q·x_r)`` is the sum of two pair values that share the point
``x_r``, so the max over the 24 triplets needs, for each ``r`` of class ``k``,
the two largest ``x_p·x_r`` over the four points of class ``i``; the pooled pair
matrix keeps only the hardest of the 16 pairs per class pair, from which that
max cannot be read. The released code's ``(x_i + y_i)·y_j`` is likewise a sum
of two pair values. So this loss takes everything before the pooling from the
shared entry (:func:`symm_keras.losses.symm_base.symm_classes`: paired batch,
Gram tensor, positive ``a_i·p_i``, negatives mask; the official positive is the
pooled diagonal, :func:`symm_keras.losses.symm_base.pooled_positive`, as for
N-pair) and pools the triplets from the same Gram tensor.
"""

import itertools

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.angular import angular_coefficients
from symm_keras.losses.base import register
from symm_keras.losses.symm_base import SymmLoss, check_symm_pairs, pooled_positive, symm_classes
from symm_keras.losses.symm_npair import symm_softmax_parts, symm_softmax_per_sample, symm_softmax_terms
from symm_keras.ops.pooling import PAPER_PAIRS, gather_set_pairs, pool_hardest
from symm_keras.ops.reductions import safe_mean

# eq. 10: unordered pairs {p, q} of class-i sets × negative set r (24 triplets).
PAPER_TRIPLETS = tuple(
    (p, q, r) for (p, q) in itertools.combinations(range(4), 2) for r in range(4)
)
# Released code: ordered pairs (X, Y) of distinct sets (12).
OFFICIAL_ORDERED_PAIRS = tuple(itertools.permutations(range(4), 2))


def _take_last(x, index):
    return ops.take(x, ops.convert_to_tensor(index, dtype="int32"), axis=-1)


def symm_angular_logits(gram, angle=45.0, pairs="official", top_k=1):
    """Pooled angular logits ``(N, N[, top_k])`` of every class pair ``(i, k)``.

    ``gram`` is the ``(4, N, 4, N)`` Gram tensor of ``A, P, A', P'``
    (:func:`symm_keras.ops.pooling.synthesis_gram`). ``"official"``: the
    elementwise max over the 12 ordered set pairs, its diagonal the pooled
    positive logit; ``"paper"``: eq. 10's max over the 24 triplets (the diagonal
    pools same-class triplets and is no negative).
    """
    c_p, c_n = angular_coefficients(angle)
    # dots[i, k, 4s + u] = z_{s,i} · z_{u,k}, from one matrix product.
    dots = gather_set_pairs(gram, PAPER_PAIRS)
    if pairs == "official":
        xy = _take_last(dots, [4 * s + u for s, u in OFFICIAL_ORDERED_PAIRS])
        yy = _take_last(dots, [5 * u for _, u in OFFICIAL_ORDERED_PAIRS])
        n = ops.shape(dots)[0]
        diagonal = ops.expand_dims(ops.cast(ops.eye(n), "bool"), -1)
        return ops.max(ops.where(diagonal, c_p * xy, c_n * (xy + yy)), axis=-1)
    first = _take_last(dots, [4 * p + r for p, _, r in PAPER_TRIPLETS])
    second = _take_last(dots, [4 * q + r for _, q, r in PAPER_TRIPLETS])
    return pool_hardest(c_n * (first + second), hardest="max", top_k=top_k)[0]


def _symm_angular_terms(y_true, y_pred, angle, pairs, l2_reg, top_k, synthesis):
    """``(batch, x, angular cross-entropy per class, L2 term per class)``.

    The shared Symm preamble (:func:`symm_keras.losses.symm_base.symm_classes`),
    then triplets pooled here: eq. 10's candidates are not pairs (module docstring).
    """
    c_p, _ = angular_coefficients(angle)
    check_symm_pairs(pairs, top_k, limit=len(PAPER_TRIPLETS))
    batch, x, positive, negatives = symm_classes(y_true, y_pred, synthesis)
    logits = symm_angular_logits(batch.gram, angle=angle, pairs=pairs, top_k=top_k)
    positive = pooled_positive(c_p * positive, logits, pairs)
    return (batch, x) + symm_softmax_terms(batch, positive, logits, negatives, l2_reg)


def symm_angular_loss_parts(y_true, y_pred, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """``{"loss", "angular", "l2"}`` of :func:`symm_angular_loss`: ``loss = angular + l2``."""
    batch, _, angular, l2 = _symm_angular_terms(y_true, y_pred, angle, pairs, l2_reg, top_k, synthesis)
    return symm_softmax_parts(batch, angular, l2, "angular")


def symm_angular_loss_per_sample(
    y_true, y_pred, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis
):
    """``(B,)`` per-sample values of :func:`symm_angular_loss` (their mean is the loss)."""
    return symm_softmax_per_sample(*_symm_angular_terms(y_true, y_pred, angle, pairs, l2_reg, top_k, synthesis))


def symm_angular_loss(y_true, y_pred, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """Symm + angular loss (eq. 10 or the released code), see the module docstring.

    Args:
        y_true, y_pred: integer labels ``(B,)``/``(B, 1)`` of a P×2 batch (other layouts:
            :mod:`symm_keras.losses.symm_base`) and raw embeddings ``(B, D)``.
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
    parts_fn = staticmethod(symm_angular_loss_parts)
    summands = ("angular", "l2")
    parts_prefix = "symm_angular"

    def __init__(self, angle=45.0, pairs="official", l2_reg=0.002, top_k=1, name="symm_angular_loss", **kwargs):
        angular_coefficients(angle)  # checks the angle
        check_symm_pairs(pairs, top_k, limit=len(PAPER_TRIPLETS))
        check_nonnegative("l2_reg", l2_reg)
        super().__init__(
            symm_angular_loss_per_sample, name, angle=angle, pairs=pairs, l2_reg=l2_reg, top_k=top_k, **kwargs
        )
