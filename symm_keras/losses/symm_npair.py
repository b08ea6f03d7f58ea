"""N-pair loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, eq. 8).

P×2 batch paired by label (:func:`symm_keras.ops.split_anchor_positive`):
anchors ``a_i``, positives ``p_i`` and their mirror images ``a'_i`` (``a_i``
about ``p_i``), ``p'_i`` (``p_i`` about ``a_i``), stacked as the sets
``A, P, A', P'`` whose similarities come from ONE matrix product
(:mod:`symm_keras.ops.pooling`). Both modes are the shared Symm transform
(:func:`symm_keras.losses.symm_base.symm_pairs` with ``metric="similarity"``
and ``pairs``) under the N-pair softmax of eq. 7.

``pairs="official"`` (default) — the released code, which produced the
published numbers: for each of the 6 unordered combinations ``(X, Y)`` of the
sets ``[A, P, P', A']`` the matrix ``X Yᵀ``; the logits are their elementwise
maximum, the diagonal (positive) included::

    L_ij = max_{(X,Y)} x_i · y_j,     L = 1/N Σ_i CE(softmax(L_i·), i)

``pairs="paper"`` — eq. 8 literally: the positive logit is ``S_ij = a_i · p_i``
and each negative class ``k`` contributes the hardest of the 16 pairs between
the four points of class ``i`` and the four of class ``k``::

    L = 1/|P| Σ_i log(1 + Σ_{k≠i} exp(max_{(p,n)∈N̂(l_i,l_k)} S_pn − S_ij))

``top_k > 1`` (paper mode only) keeps the ``k`` hardest pairs per class pair,
each as its own term of the sum (Fig. 5's "top-k hardest"). Both modes add
the released code's ``0.25·λ·(mean‖a‖² + mean‖p‖²)`` on the raw features
(``l2_reg = λ``, default 0.002; 0 switches it off); the paper feeds N-pair
non-normalised embeddings.

Parts (:func:`symm_npair_loss_parts`, logged as ``symm_npair_softmax``,
``symm_npair_l2``): ``softmax`` (the pooled cross-entropy of eq. 8 / the
released code) + ``l2`` (the regulariser) = loss.

Note on ``"official"``: its pooled positive logit includes ``a·a' = ‖a‖² cos 2θ``,
which is maximal again for an anti-parallel pair ``a = −p``, so from random
initialisation it learns much more slowly than ``"paper"`` (docs/losses.md,
"Symm: paper vs released code"); from a pretrained backbone, as in the paper,
pairs start close and it trains as published.

Synthesis options, batch layouts and per-sample values (each class's
cross-entropy + its L2 share ``0.25·λ·(‖a_i‖² + ‖p_i‖²)``):
:mod:`symm_keras.losses.symm_base`.
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import register
from symm_keras.losses.npair import pair_l2_terms, pair_per_sample
from symm_keras.losses.symm_base import SymmLoss, check_symm_pairs, symm_pairs
from symm_keras.ops.reductions import masked_mean, safe_mean
from symm_keras.ops.softmax_pairs import npair_cross_entropy


def symm_softmax_terms(batch, positive, logits, negatives, l2_reg):
    """``(cross-entropy per class, L2 term per class)`` of a pooled softmax Symm loss
    (eq. 8, 10): ``log(1 + Σ_{k≠i} exp(logits_ik − positive_i))`` over the negative
    classes, and the released code's L2 share ``0.25·λ·(‖a_i‖² + ‖p_i‖²)``."""
    l2_reg = check_nonnegative("l2_reg", l2_reg)
    cross_entropy = npair_cross_entropy(positive, logits, negatives, anchor_mask=batch.pair_valid)
    l2 = ops.where(batch.pair_valid, pair_l2_terms(batch.anchors, batch.positives, l2_reg), 0.0)
    return cross_entropy, l2


def symm_softmax_parts(batch, cross_entropy, l2, name):
    """``{"loss", name, "l2"}``: the class means of the two terms and of their sum."""
    valid = batch.pair_valid
    return {
        "loss": masked_mean(cross_entropy + l2, valid),
        name: masked_mean(cross_entropy, valid),
        "l2": masked_mean(l2, valid),
    }


def symm_softmax_per_sample(batch, x, cross_entropy, l2):
    """``(B,)`` per-sample values whose mean is the mean of ``cross_entropy + l2`` over the classes."""
    return pair_per_sample(cross_entropy + l2, batch.pairs, x)


def _symm_npair_terms(y_true, y_pred, pairs, l2_reg, top_k, synthesis):
    """``(batch, x, cross-entropy per class, L2 term per class)``."""
    batch, x, positive, pooled, negatives = symm_pairs(y_true, y_pred, "similarity", synthesis, top_k, pairs)
    return (batch, x) + symm_softmax_terms(batch, positive, pooled, negatives, l2_reg)


def symm_npair_loss_parts(y_true, y_pred, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """``{"loss", "softmax", "l2"}`` of :func:`symm_npair_loss`: ``loss = softmax + l2``."""
    batch, _, softmax, l2 = _symm_npair_terms(y_true, y_pred, pairs, l2_reg, top_k, synthesis)
    return symm_softmax_parts(batch, softmax, l2, "softmax")


def symm_npair_loss_per_sample(y_true, y_pred, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """``(B,)`` per-sample values of :func:`symm_npair_loss` (their mean is the loss)."""
    return symm_softmax_per_sample(*_symm_npair_terms(y_true, y_pred, pairs, l2_reg, top_k, synthesis))


def symm_npair_loss(y_true, y_pred, pairs="official", l2_reg=0.002, top_k=1, **synthesis):
    """Symm + N-pair loss (eq. 8 or the released code), see the module docstring.

    Args:
        y_true, y_pred: integer labels ``(B,)``/``(B, 1)`` of a P×2 batch (other layouts:
            :mod:`symm_keras.losses.symm_base`) and raw embeddings ``(B, D)``.
        pairs: ``"official"`` (default, 6 combinations, positive pooled too)
            or ``"paper"`` (eq. 8: 16 pairs, positive logit ``a·p``).
        l2_reg: ``λ`` of the L2 term (default 0.002, 0 = off).
        top_k: hardest pairs per class pair, ``pairs="paper"`` only.
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``,
            ``force_norm`` (:mod:`symm_keras.losses.symm_base`).
    """
    return safe_mean(symm_npair_loss_per_sample(y_true, y_pred, pairs, l2_reg, top_k, **synthesis))


@register
class SymmNPairLoss(SymmLoss):
    """Symm + N-pair loss (eq. 8 / released code); see :func:`symm_npair_loss`.

    Args:
        pairs: ``"official"`` (default) or ``"paper"``.
        l2_reg: official L2 term weight ``λ`` (default 0.002, 0 = off).
        top_k: hardest pairs per class pair (default 1; >1 needs ``"paper"``).
        **kwargs: synthesis options (default: the symmetric point), ``reduction``, ``dtype``.
    """

    batch_layout = "pk"
    parts_fn = staticmethod(symm_npair_loss_parts)
    summands = ("softmax", "l2")
    parts_prefix = "symm_npair"

    def __init__(self, pairs="official", l2_reg=0.002, top_k=1, name="symm_npair_loss", **kwargs):
        check_symm_pairs(pairs, top_k)
        check_nonnegative("l2_reg", l2_reg)
        super().__init__(symm_npair_loss_per_sample, name, pairs=pairs, l2_reg=l2_reg, top_k=top_k, **kwargs)
