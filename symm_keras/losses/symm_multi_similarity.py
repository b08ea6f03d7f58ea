"""Multi-similarity loss with Symmetrical Synthesis (Gu & Ko, AAAI 2020, §3.2 applied
to Wang et al., CVPR 2019, Sec. 4).

The Symm transform (:func:`symm_keras.losses.symm_base.symm_pairs`) under the
multi-similarity loss (:mod:`symm_keras.losses.multi_similarity`): in a P×2 batch
anchor ``a_i`` (and likewise ``p_i``) has the positive similarity ``S⁺_i = a_i·p_i``
and, for every other class ``k``, its two images as negatives, each with the class
pair's pooled similarity ``Ŝ_ik = max_{(p,n)∈N̂(l_i,l_k)} S_pn`` (the hardest of
the 16 pairs of the four points ``a, p, a', p'``). Mining (Sec. 4.1, margin ``ε``)
keeps class ``k`` if ``Ŝ_ik > S⁺_i − ε`` and the positive if ``S⁺_i < max_k Ŝ_ik + ε``::

    L_i = 1/α log[1 + e^{−α(S⁺_i − λ)}] + 1/β log[1 + 2 Σ_{k kept} e^{β(Ŝ_ik − λ)}]

and ``L`` is the mean of ``L_i`` over the images (both images of a class have the
same term). Defaults as the baseline: ``α = 2, β = 50, λ = 1, ε = 0.1``.
Synthesis options, other layouts and per-sample values:
:mod:`symm_keras.losses.symm_base`.
"""

import math

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import register
from symm_keras.losses.multi_similarity import MultiSimilarityOptions, check_positive, multi_similarity_mining
from symm_keras.losses.symm_base import SymmLoss, class_per_sample, symm_pairs
from symm_keras.ops.reductions import masked_softplus_logsumexp, safe_mean


def _symm_ms_terms(y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining, synthesis):
    """``(batch, x, positive term per class, negative term per class)``."""
    a = check_positive("positive_scale", positive_scale)
    b = check_positive("negative_scale", negative_scale)
    epsilon = check_nonnegative("epsilon", epsilon)
    batch, x, positive, pooled, negatives = symm_pairs(y_true, y_pred, "similarity", synthesis)
    positive = ops.expand_dims(positive, 1)  # (N, 1): the class's one positive similarity
    has_positive = ops.expand_dims(batch.pair_valid, 1)
    if mining:
        has_positive, negatives = multi_similarity_mining(
            ops.concatenate([positive, pooled], axis=1),
            ops.concatenate([has_positive, ops.zeros_like(negatives)], axis=1),
            ops.concatenate([ops.zeros_like(has_positive), negatives], axis=1),
            epsilon,
        )
        has_positive, negatives = has_positive[:, :1], negatives[:, 1:]
    positive_term = masked_softplus_logsumexp(-a * (positive - base), has_positive, axis=1) / a
    # Each negative class has two images with the same pooled similarity: log 2 in the exponent.
    negative_term = masked_softplus_logsumexp(b * (pooled - base) + math.log(2.0), negatives, axis=1) / b
    valid = batch.pair_valid
    zero = ops.zeros_like(positive_term)
    return batch, x, ops.where(valid, positive_term, zero), ops.where(valid, negative_term, zero)


def symm_multi_similarity_loss_per_sample(
    y_true, y_pred, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True, **synthesis
):
    """``(B,)`` per-sample values of :func:`symm_multi_similarity_loss` (their mean is the loss)."""
    batch, x, positive, negative = _symm_ms_terms(
        y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining, synthesis
    )
    used_images = 2.0 * ops.sum(ops.cast(batch.pair_valid, x.dtype))
    return class_per_sample(2.0 * (positive + negative), batch, used_images, x)


def symm_multi_similarity_loss(
    y_true, y_pred, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True, **synthesis
):
    """Symm + multi-similarity loss of a P×2 batch (module docstring).

    Args:
        y_true: integer labels ``(B,)``/``(B, 1)``, every class exactly twice
            (other layouts: :mod:`symm_keras.losses.symm_base`).
        y_pred: embeddings ``(B, D)``, L2-normalised in the MS paper.
        positive_scale, negative_scale, base, epsilon, mining: as
            :func:`symm_keras.losses.multi_similarity.multi_similarity_loss`.
        **synthesis: ``synthesis_alpha``, ``synthesis_beta``, ``formula``, ``force_norm``.
    """
    return safe_mean(
        symm_multi_similarity_loss_per_sample(
            y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining, **synthesis
        )
    )


def symm_multi_similarity_loss_parts(
    y_true, y_pred, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True, **synthesis
):
    """``{"loss", "positive", "negative"}``: the means of the two terms (sum = loss)."""
    batch, x, positive, negative = _symm_ms_terms(
        y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining, synthesis
    )
    classes = ops.maximum(ops.sum(ops.cast(batch.pair_valid, x.dtype)), 1.0)
    parts = {"positive": ops.sum(positive) / classes, "negative": ops.sum(negative) / classes}
    return {"loss": parts["positive"] + parts["negative"], **parts}


@register
class SymmMultiSimilarityLoss(MultiSimilarityOptions, SymmLoss):
    """Symm + multi-similarity loss; see :func:`symm_multi_similarity_loss`.

    Options: :class:`symm_keras.losses.multi_similarity.MultiSimilarityOptions`;
    ``**kwargs`` also takes the synthesis options (default: the symmetric point).
    """

    batch_layout = "pk"
    zero_without_positives = True
    per_sample_fn = staticmethod(symm_multi_similarity_loss_per_sample)
    default_name = "symm_multi_similarity_loss"
    parts_fn = staticmethod(symm_multi_similarity_loss_parts)
    summands = ("positive", "negative")
    parts_prefix = "symm_multi_similarity"
