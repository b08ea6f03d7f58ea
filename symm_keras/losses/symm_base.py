"""What the Symm losses share: the synthesis options, the paired batch, the Symm
transform of the pair matrix and per-sample values (Gu & Ko, AAAI 2020, §3.1–3.2).

The transform (:func:`symm_pairs`): classes replace images; each class ``i``
keeps its positive pair's value and each class pair ``(i, k)`` gets the hardest
of the candidate pairs between the four points ``a, p, a', p'`` of the two
classes — the ``min``/``max`` over ``N̂(l_i, l_k)`` of eq. 4 (triplet), 6
(lifted) and 8 (N-pair), or the released code's 6 set combinations
(``pairs="official"``, positive pooled too). Symm triplet, semi-hard, lifted,
contrastive, multi-similarity and N-pair are their baseline formulas written on
these values. Symm angular (eq. 10) shares everything before the pooling
(:func:`symm_classes`: batch, Gram tensor, positive, negatives mask) but pools
*triplets*: its negative logit ``f^n_pqr = 4t (x_p·x_r + x_q·x_r)`` is a sum of two
pair values sharing ``x_r``, so eq. 10's max over the 24 triplets needs, for each
point ``r`` of class ``k``, the two largest ``x_p·x_r`` over class ``i``'s four
points; a pooled pair matrix keeps one value (the hardest of the 16 pairs) per
class pair, from which that max cannot be read.

Every Symm loss takes the synthesis options of eq. 1–2 under the same names:
``synthesis_alpha`` (α, how far the point moves; 2 = the mirror image),
``synthesis_beta`` (β, its scale), ``formula`` (``"paper"`` eq. 2 or
``"released"``) and ``force_norm`` (Fig. 4's ablation), see
:func:`symm_keras.ops.synthesis.mirror_points`. ``alpha``/``beta`` are refused
with an error naming the new option, so an angle (``angle=``) or a margin
(``margin=``) can never be taken for a synthesis coefficient.

Batches: each class seen at least twice gives one positive pair (its first and
second image, :func:`symm_keras.ops.pairs.pair_indices`); for a P×2 batch those
are all images. Other images are unused (zero per-sample value and gradient).
A loss that is a sum of per-class terms over a normaliser has per-sample
values (:func:`class_per_sample`): each class's term shared by its two rows.
"""

import collections

from keras import ops

from symm_keras.losses._validation import check_choice
from symm_keras.losses.base import EmbeddingLoss, as_float
from symm_keras.ops.labels import flatten_labels
from symm_keras.ops.pairs import pairs_to_rows
from symm_keras.ops.distances import safe_sqrt
from symm_keras.ops.pooling import PAIR_MODES, check_top_k, pool_gram, symm_pk_batch
from symm_keras.ops.reductions import per_sample_values
from symm_keras.ops.synthesis import SYNTHESIS_DEFAULTS, class_pair_negatives, synthesis_options


SymmClasses = collections.namedtuple("SymmClasses", "batch x positive negatives")
SymmPairs = collections.namedtuple("SymmPairs", "batch x positive pooled negatives")


def check_symm_pairs(pairs, top_k, limit=16):
    """Validate ``pairs`` (``"paper"``/``"official"``) and ``top_k`` (``1..limit``);
    the released code (``"official"``) pools the single hardest candidate only."""
    check_choice("pairs", pairs, tuple(PAIR_MODES))
    check_top_k(top_k, limit=limit)
    if pairs == "official" and top_k != 1:
        raise ValueError(
            "top_k > 1 needs pairs='paper': the released code ('official') pools "
            f"the single hardest pair, positive logit included; got top_k={top_k!r}."
        )


def symm_classes(y_true, y_pred, synthesis, metric="similarity"):
    """What every Symm loss shares before pooling (§3.1–3.2): :class:`SymmClasses`.

    ``batch`` (the paired batch and the ``(4, N, 4, N)`` Gram tensor of the four
    points ``a, p, a', p'`` of every class, eq. 1–2), ``x`` (the float
    embeddings), ``positive[i]`` (the positive pair's value ``a_i·p_i``, or
    their (squared) Euclidean distance for ``metric``) and ``negatives[i, k]``
    (class pair ``(i, k)`` is a real negative pair). :func:`symm_pairs` pools
    pairs from it; Symm angular pools triplets (eq. 10, see
    :mod:`symm_keras.losses.symm_angular`).
    """
    labels = flatten_labels(y_true, y_pred)
    x = as_float(y_pred)
    batch = symm_pk_batch(labels, x, **synthesis_options("the Symm loss", **synthesis))
    if metric == "similarity":
        positive = ops.sum(batch.anchors * batch.positives, axis=-1)
    else:
        positive = ops.sum(ops.square(batch.anchors - batch.positives), axis=-1)
        positive = safe_sqrt(positive) if metric == "euclidean" else positive
    return SymmClasses(batch, x, positive, class_pair_negatives(batch.pair_labels, batch.pair_valid))


def pooled_positive(positive, pooled, pairs):
    """The positive value of each class: the pair's own (eq. 4, 6, 8, 10) or, for the
    released code (``pairs="official"``), the diagonal of the pooled matrix."""
    return ops.diagonal(pooled) if pairs == "official" else positive


def symm_pairs(y_true, y_pred, metric, synthesis, top_k=1, pairs="paper"):
    """The Symm transform of a batch's pair matrix (§3.2), shared by the pair-based Symm losses.

    Classes (pairs ``(a_i, p_i)``) replace images: ``pooled[i, k]`` is the
    hardest of the candidate pairs between the four points ``a, p, a', p'`` of
    classes ``i`` and ``k`` (max similarity / min distance, ``top_k`` hardest on
    a last axis when > 1); ``pairs="paper"``: the 16 pairs ``N̂(l_i, l_k)`` of
    eq. 4, 6, 8, with ``positive[i]`` the positive pair's value (``a_i·p_i``,
    or their (squared) distance); ``pairs="official"``: the released code's 6
    set combinations (:mod:`symm_keras.ops.pooling`), with the pooled diagonal
    as the positive. ``negatives[i, k]`` marks the real negative class pairs.
    ``metric``: ``"similarity"``, ``"squared_euclidean"`` or ``"euclidean"``. A
    baseline pair loss written on ``(positive, pooled)`` becomes its Symm form.
    Symm angular's candidates are triplets, not pairs: it uses
    :func:`symm_classes` and pools them itself (eq. 10).
    """
    check_symm_pairs(pairs, top_k)
    batch, x, positive, negatives = symm_classes(y_true, y_pred, synthesis, metric)
    pooled, _ = pool_gram(batch.gram, metric=metric, pairs=pairs, top_k=top_k)
    return SymmPairs(batch, x, pooled_positive(positive, pooled, pairs), pooled, negatives)


def flat_candidates(pooled, negatives):
    """``(N, M)`` candidates and their negatives mask: ``top_k`` pooled values of a class
    pair (a last axis of ``pooled``) become separate candidates of the class."""
    if len(pooled.shape) == 2:
        return pooled, negatives
    negatives = ops.broadcast_to(ops.expand_dims(negatives, -1), ops.shape(pooled))
    n = ops.shape(pooled)[0]
    return ops.reshape(pooled, (n, -1)), ops.reshape(negatives, (n, -1))


def class_per_sample(class_terms, batch, count, x):
    """Per-sample values (``(B,)``, ``B`` rows of ``x``) of ``Σ_i class_terms[i] / count``;
    each class's term is shared by its two rows, padding slots add nothing."""
    return per_sample_values(pairs_to_rows(class_terms, batch.pairs, ops.shape(x)[0]), count)


class SymmLoss(EmbeddingLoss):
    """Base of the Symm losses: the synthesis options (module docstring), validated once
    and saved in the config with the loss's own ``params``."""

    batch_layout = None  # a base class: the losses below set "pk"
    images_per_class = 2

    def __init__(self, fn, name, **params):
        synthesis = {key: params.pop(key, default) for key, default in SYNTHESIS_DEFAULTS.items()}
        synthesis_options(type(self).__name__, **synthesis)
        super().__init__(fn, name=name, **params, **synthesis)


class SymmHingeLoss(SymmLoss):
    """Base of the hinge Symm losses (triplet, semi-hard, lifted): the loss is its one
    summand ``hinge``, with the diagnostic ``active_share`` (:func:`symm_keras.losses.base.hinge_parts`)."""

    summands = ("hinge",)
    diagnostics = ("active_share",)
