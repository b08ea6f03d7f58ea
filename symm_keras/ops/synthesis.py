"""Symmetrical synthesis: mirror a point about the axis through a same-class point.

Gu & Ko, *Symmetrical Synthesis for Deep Metric Learning*, AAAI 2020, §3.1.
Given two points ``x`` (mirrored) and ``y`` (the axis) of the same class:

* eq. 1: ``r = (x · u) u`` with ``u = y / ‖y‖`` — the projection of ``x`` on ``y``;
* eq. 2: ``x' = β [α (r − x) + x]`` (``formula="paper"``, the default).

``α = 2, β = 1`` gives the symmetric point ``x' = 2r − x``: the mirror image of
``x`` about the line through the origin and ``y``. It keeps ``‖x'‖ = ‖x‖``,
``x' · y = x · y`` and ``‖x' − y‖ = ‖x − y‖`` (paper §3.1, "two reasons").

The released code (``clovaai/symmetrical-synthesis``) writes the point as
``x' = β (α r − x)`` (``formula="released"``). Both agree at ``α = 2`` (every
published result) and differ for other ``α``: the paper's form moves along
the segment from ``x`` towards its mirror image, the released form does not.

Norm forcing (the paper's Fig. 4 ablation) rescales ``x'`` to a given norm:
``force_norm="point"`` multiplies by ``‖x‖ / ‖x'‖`` as the paper's text says,
``force_norm="axis"`` by ``‖y‖ / ‖x'‖`` as the released code does.
"""

from keras import ops

from symm_keras.ops.pairs import split_anchor_positive

FORMULAS = ("paper", "released")
FORCE_NORMS = (None, "point", "axis")


def check_synthesis_args(alpha, beta, formula, force_norm):
    """Raise ``ValueError`` naming the bad synthesis argument."""
    if formula not in FORMULAS:
        raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}.")
    if force_norm not in FORCE_NORMS:
        raise ValueError(f"force_norm must be one of {FORCE_NORMS}, got {force_norm!r}.")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{name} must be a real number, got {value!r}.")


#: The user-facing names of the synthesis options (losses, layers, metrics):
#: eq. 2's α and β are ``synthesis_alpha`` / ``synthesis_beta`` there, so that
#: they are never confused with an angle or a margin; the functions of this
#: module keep the paper's ``alpha`` / ``beta``.
SYNTHESIS_DEFAULTS = {"synthesis_alpha": 2.0, "synthesis_beta": 1.0, "formula": "paper", "force_norm": None}


def synthesis_options(owner, synthesis_alpha=2.0, synthesis_beta=1.0, formula="paper", force_norm=None, **unknown):
    """Validated :func:`mirror_points` keyword arguments from the user-facing names.

    ``alpha`` / ``beta`` (and any other unknown name) raise ``ValueError``
    naming ``owner`` and the option to use instead.
    """
    renamed = {"alpha": "synthesis_alpha", "beta": "synthesis_beta"}
    for old in unknown:
        hint = f"; the synthesis option is {renamed[old]}=" if old in renamed else ""
        raise ValueError(f"{owner} has no option {old!r}{hint} (options: {sorted(SYNTHESIS_DEFAULTS)}).")
    check_synthesis_args(synthesis_alpha, synthesis_beta, formula, force_norm)
    return {"alpha": synthesis_alpha, "beta": synthesis_beta, "formula": formula, "force_norm": force_norm}


def pop_synthesis_options(owner, kwargs):
    """``(options, mirror_kwargs)`` of a layer: the synthesis options popped from its
    ``kwargs`` (defaults filled in; ``alpha``/``beta`` popped too, to be refused by
    :func:`synthesis_options` naming the new option) and their validated
    :func:`mirror_points` arguments."""
    options = {key: kwargs.pop(key, default) for key, default in SYNTHESIS_DEFAULTS.items()}
    refused = {old: kwargs.pop(old) for old in ("alpha", "beta") if old in kwargs}
    return options, synthesis_options(owner, **options, **refused)


def mirror_points(x, axis, alpha=2.0, beta=1.0, formula="paper", force_norm=None):
    """Synthetic points of ``x`` with the rows of ``axis`` as axes of symmetry (eq. 1–2).

    Args:
        x: ``(..., D)`` points to mirror.
        axis: ``(..., D)`` same-class points used as axes, row-aligned with ``x``.
        alpha: how far the synthetic point moves from ``x`` (2 = mirror image).
        beta: scale of the synthetic point (1 = same norm as ``x`` at ``α = 2``).
        formula: ``"paper"`` for eq. 2, ``β[α(r − x) + x]``; ``"released"`` for
            the released code's ``β(αr − x)``.
        force_norm: ``None``, ``"point"`` (rescale to ``‖x‖``, paper Fig. 4) or
            ``"axis"`` (rescale to ``‖axis‖``, released code).

    Computed as ``c_x x + c_y axis`` (:func:`mirror_coefficients`). A zero
    axis has no direction: its projection is 0, so ``x' = β(1 − α)x`` (paper
    formula); ``‖y‖²`` is floored at 1e-12, which keeps values and gradients
    finite for any input (the projection fades out smoothly below ‖y‖ = 1e-6).
    """
    x, axis = ops.convert_to_tensor(x), ops.convert_to_tensor(axis)  # ``numpy * tensor`` fails on torch
    c_x, c_y = mirror_coefficients(
        ops.sum(ops.square(x), axis=-1, keepdims=True),
        ops.sum(x * axis, axis=-1, keepdims=True),
        ops.sum(ops.square(axis), axis=-1, keepdims=True),
        alpha=alpha,
        beta=beta,
        formula=formula,
        force_norm=force_norm,
    )
    return c_x * x + c_y * axis


def mirror_coefficients(xx, xy, yy, alpha=2.0, beta=1.0, formula="paper", force_norm=None):
    """``(c_x, c_y)`` with ``mirror_points(x, y) = c_x x + c_y y`` (row-wise scalars).

    Every synthetic point lies in the plane of ``x`` and its axis ``y``:
    eq. 1 gives ``r = (x·y / ‖y‖²) y``, so eq. 2 is ``β(1 − α) x + βα (x·y/‖y‖²) y``
    (released form: ``−β x + βα (x·y/‖y‖²) y``), and norm forcing rescales both
    coefficients. Computed from ``xx = ‖x‖²``, ``xy = x·y``, ``yy = ‖y‖²`` only,
    which lets :func:`symm_keras.ops.pooling.synthesis_gram` get every dot
    product of original and synthetic points without building the points.
    """
    check_synthesis_args(alpha, beta, formula, force_norm)
    ratio = xy / ops.maximum(yy, 1e-12)  # x·y/‖y‖²; finite value and gradient at y = 0
    c_x = (beta * (1.0 - alpha) if formula == "paper" else -beta) * ops.ones_like(ratio)
    c_y = beta * alpha * ratio
    if force_norm is not None:
        norm_sq = c_x * c_x * xx + 2.0 * c_x * c_y * xy + c_y * c_y * yy
        target_sq = xx if force_norm == "point" else yy
        scale = ops.sqrt(ops.maximum(target_sq, 1e-24)) / ops.sqrt(ops.maximum(norm_sq, 1e-24))
        c_x, c_y = c_x * scale, c_y * scale
    return c_x, c_y


def symmetric_pair_synthesis(anchors, positives, **synthesis_kwargs):
    """Both synthetic points of each positive pair ``(a_i, p_i)``.

    Returns ``(anchors_synthetic, positives_synthetic)``: ``a'_i`` is ``a_i``
    mirrored about ``p_i`` and ``p'_i`` is ``p_i`` mirrored about ``a_i`` — the
    four points ``a, p, a', p'`` of paper Fig. 3. ``synthesis_kwargs`` go to
    :func:`mirror_points`.
    """
    return (
        mirror_points(anchors, positives, **synthesis_kwargs),
        mirror_points(positives, anchors, **synthesis_kwargs),
    )


def synthesize_pk_batch(labels, embeddings, **synthesis_kwargs):
    """The four point sets of a P×2 batch (paper Fig. 3), stacked.

    Pairs each class's first and second occurrence (labels define the pairs,
    see :func:`symm_keras.ops.pairs.split_anchor_positive`) and returns
    ``(point_sets, pair_labels, pair_valid)``: ``point_sets`` is ``(4, N, D)``
    holding ``A, P, A', P'`` (see :mod:`symm_keras.ops.pooling`),
    ``pair_labels`` the ``N`` class labels and ``pair_valid`` whether anchor
    and positive really share a label (always, for a valid batch).

    The paper's synthesis pairs each point with exactly one axis point of its
    class (eq. 1–2), i.e. K = 2. Any other layout is defined the same way,
    eagerly and under ``jit``: each class seen at least twice gives one pair
    (its first and second image, :func:`symm_keras.ops.pairs.pair_indices`);
    the remaining ``B // 2`` slots are padding with ``pair_valid`` False,
    which every Symm loss masks out.
    """
    anchors, positives, pair_labels, pair_valid = split_anchor_positive(labels, embeddings)
    anchors_syn, positives_syn = symmetric_pair_synthesis(anchors, positives, **synthesis_kwargs)
    point_sets = ops.stack([anchors, positives, anchors_syn, positives_syn], axis=0)
    return point_sets, pair_labels, pair_valid


def class_pair_negatives(pair_labels, pair_valid):
    """``(N, N)`` boolean: class pair ``(i, k)`` is a negative pair of two valid rows."""
    different = ops.not_equal(ops.expand_dims(pair_labels, 1), ops.expand_dims(pair_labels, 0))
    both_valid = ops.logical_and(ops.expand_dims(pair_valid, 1), ops.expand_dims(pair_valid, 0))
    return ops.logical_and(different, both_valid)
