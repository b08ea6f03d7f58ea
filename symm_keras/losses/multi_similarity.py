"""Multi-similarity loss (Wang et al., *Multi-Similarity Loss with General Pair
Weighting for Deep Metric Learning*, CVPR 2019, Sec. 4).

With similarities ``S_ik = x_i · x_k`` (cosine for the paper's L2-normalised
embeddings), per anchor ``i`` the pairs are first mined (Sec. 4.1, margin ``ε``):

* a negative ``k`` is kept if ``S_ik > min_{y_j = y_i, j ≠ i} S_ij − ε``;
* a positive ``k`` is kept if ``S_ik < max_{y_j ≠ y_i} S_ij + ε``;

and then weighted by the loss (Sec. 4.2)::

    L = 1/m Σ_i { 1/α log[1 + Σ_{k∈P_i} e^{−α(S_ik − λ)}] + 1/β log[1 + Σ_{k∈N_i} e^{β(S_ik − λ)}] }

``m`` is the batch size (anchors whose mined sets are empty count, with 0).
Defaults are the paper's (Sec. 5.1): ``α = 2``, ``β = 50``, ``λ = 1``, ``ε = 0.1``
(options ``positive_scale``, ``negative_scale``, ``base``, ``epsilon``: the
family's ``alpha``/``beta`` names are reserved, see :mod:`symm_keras.losses.base`)
(pytorch-metric-learning's ``MultiSimilarityLoss`` defaults to ``base=0.5``
and mines only with its separate ``MultiSimilarityMiner``; ``mining=False``
uses every pair, as that loss alone does). An anchor without positives keeps
no negatives (the rule compares with its positives) and vice versa, as the
released code skips such anchors. Mining selects pairs and is not
differentiated. Per sample: anchor ``i``'s term ``L_i`` (the mean is ``L``).
"""

from keras import ops

from symm_keras.losses._validation import check_nonnegative
from symm_keras.losses.base import EmbeddingLoss, as_float, register
from symm_keras.ops.distances import pairwise_similarities
from symm_keras.ops.labels import flatten_labels, negative_mask, positive_mask
from symm_keras.ops.reductions import masked_max, masked_min, masked_softplus_logsumexp, safe_mean


def check_positive(name, value):
    """Raise ``ValueError`` unless ``value`` is a finite real number ``> 0``."""
    if check_nonnegative(name, value) == 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    return float(value)


def multi_similarity_options(positive_scale, negative_scale, base, epsilon, mining):
    """The checked ``α, β, λ, ε`` and mining switch (Sec. 4) as a loss class's config arguments."""
    check_positive("positive_scale", positive_scale)
    check_positive("negative_scale", negative_scale)
    check_nonnegative("epsilon", epsilon)
    return dict(
        positive_scale=positive_scale,
        negative_scale=negative_scale,
        base=float(base),
        epsilon=epsilon,
        mining=bool(mining),
    )


def multi_similarity_mining(similarities, positives, negatives, epsilon):
    """``(kept positives, kept negatives)`` of Sec. 4.1 (boolean, like the masks).

    ``similarities`` is ``(A, B)`` (anchors × candidates); ``positives`` and
    ``negatives`` the candidate masks. Not differentiated.
    """
    s = ops.stop_gradient(similarities)
    hardest_positive = masked_min(s, positives, axis=1, keepdims=True, empty_value=float("inf"))
    hardest_negative = masked_max(s, negatives, axis=1, keepdims=True, empty_value=float("-inf"))
    kept_negatives = ops.logical_and(negatives, ops.greater(s, hardest_positive - epsilon))
    kept_positives = ops.logical_and(positives, ops.less(s, hardest_negative + epsilon))
    return kept_positives, kept_negatives


def multi_similarity_terms(similarities, positives, negatives, positive_scale, negative_scale, base):
    """Per-anchor ``(1/α log[1 + Σ_P e^{−α(S−λ)}], 1/β log[1 + Σ_N e^{β(S−λ)}])`` (Sec. 4.2)."""
    a, b = positive_scale, negative_scale
    positive_term = masked_softplus_logsumexp(-a * (similarities - base), positives, axis=1) / a
    negative_term = masked_softplus_logsumexp(b * (similarities - base), negatives, axis=1) / b
    return positive_term, negative_term


def _ms_terms(y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining):
    positive_scale = check_positive("positive_scale", positive_scale)
    negative_scale = check_positive("negative_scale", negative_scale)
    epsilon = check_nonnegative("epsilon", epsilon)
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    s = pairwise_similarities(x)
    positives, negatives = positive_mask(labels), negative_mask(labels)
    if mining:
        positives, negatives = multi_similarity_mining(s, positives, negatives, epsilon)
    return multi_similarity_terms(s, positives, negatives, positive_scale, negative_scale, base)


def multi_similarity_loss_per_sample(
    y_true, y_pred, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True
):
    """``(B,)`` per-anchor terms ``L_i`` of :func:`multi_similarity_loss`."""
    positive, negative = _ms_terms(y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining)
    return positive + negative


def multi_similarity_loss_parts(
    y_true, y_pred, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True
):
    """``{"loss", "positive", "negative"}``: the batch means of the two terms (sum = loss)."""
    positive, negative = _ms_terms(y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining)
    return {"loss": safe_mean(positive + negative), "positive": safe_mean(positive), "negative": safe_mean(negative)}


def multi_similarity_loss(
    y_true, y_pred, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True
):
    """Multi-similarity loss of a batch (module docstring).

    Args:
        y_true: integer class labels ``(B,)``/``(B, 1)`` (any layout).
        y_pred: embeddings ``(B, D)``, L2-normalised in the paper.
        positive_scale: ``α``, the positive pairs' scale (default 2).
        negative_scale: ``β``, the negative pairs' scale (default 50).
        base: ``λ``, the similarity margin (default 1, the paper's).
        epsilon: ``ε`` of the mining rule (default 0.1).
        mining: mine the pairs (Sec. 4.1, default) or use every pair.
    """
    return safe_mean(
        multi_similarity_loss_per_sample(y_true, y_pred, positive_scale, negative_scale, base, epsilon, mining)
    )


class MultiSimilarityOptions:
    """Constructor of the multi-similarity losses, mixed in before their loss base class.

    Args:
        positive_scale: ``α`` (default 2); negative_scale: ``β`` (default 50);
        base: ``λ`` (default 1); epsilon: mining margin ``ε`` (default 0.1);
        mining: mine pairs as Sec. 4.1 (default True); defaults of Sec. 5.1.
        name: the loss name (default: the class's ``default_name``).
        **kwargs: passed to the loss base class (``reduction``, ``dtype``, ...).

    The class names its per-sample functional in ``per_sample_fn``.
    """

    def __init__(
        self, positive_scale=2.0, negative_scale=50.0, base=1.0, epsilon=0.1, mining=True, name=None, **kwargs
    ):
        super().__init__(
            type(self).per_sample_fn,
            name=name or type(self).default_name,
            **multi_similarity_options(positive_scale, negative_scale, base, epsilon, mining),
            **kwargs,
        )


@register
class MultiSimilarityLoss(MultiSimilarityOptions, EmbeddingLoss):
    """Multi-similarity loss (Wang et al. CVPR 2019, Sec. 4); see :func:`multi_similarity_loss`.

    Options: :class:`MultiSimilarityOptions`.
    """

    batch_layout = "pk"
    images_per_class = None
    zero_without_positives = True  # mining keeps no negative for an anchor without positives
    per_sample_fn = staticmethod(multi_similarity_loss_per_sample)
    default_name = "multi_similarity_loss"
    parts_fn = staticmethod(multi_similarity_loss_parts)
    summands = ("positive", "negative")
    parts_prefix = "multi_similarity"
