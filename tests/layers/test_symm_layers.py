"""L2Normalize, SymmetricalSynthesis and HardestPairPooling layers."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.layers import HardestPairPooling, L2Normalize, SymmetricalSynthesis, partner_indices
from symm_keras.ops.pairs import check_pk_layout
from symm_keras.ops.pooling import hardest_pair_pooling
from symm_keras.ops.synthesis import mirror_points, synthesize_pk_batch
from tests.losses.autodiff import value_and_gradient
from tests.losses.symm_helpers import jit


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


@pytest.fixture
def batch(rng):
    labels = np.array([3, 1, 4, 1, 3, 4, 0, 0, 2, 5, 5, 2])
    return labels, rng.normal(size=(12, 8)).astype("float32")


def _round_trip(model, tmp_path, inputs):
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(keras.tree.flatten(model(inputs)), keras.tree.flatten(loaded(inputs))):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)
    return loaded


def test_l2_normalize_layer(batch, tmp_path):
    _, x = batch
    x[0] = 0.0
    layer = L2Normalize()
    y = _np(layer(x))
    np.testing.assert_allclose(np.linalg.norm(y[1:], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(y[0], 0.0)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, L2Normalize(epsilon=1e-6)(keras.layers.Dense(4)(inputs)))
    loaded = _round_trip(model, tmp_path, x)
    assert loaded.layers[-1].get_config()["epsilon"] == 1e-6
    with pytest.raises(ValueError, match="axis"):
        L2Normalize(axis=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        L2Normalize(epsilon=0.0)


def test_partner_indices(batch):
    labels, _ = batch
    partner = _np(partner_indices(ops.convert_to_tensor(labels))).astype(int)
    for i, j in enumerate(partner):
        assert i != j and labels[i] == labels[j]
    lonely = _np(partner_indices(ops.convert_to_tensor(np.array([0, 1, 1])))).astype(int)
    np.testing.assert_array_equal(lonely, [0, 2, 1])


def test_symmetrical_synthesis_layer_mirrors_about_the_partner(batch, tmp_path):
    labels, x = batch
    layer = SymmetricalSynthesis()
    out = _np(layer(x, labels))
    partner = [int(np.flatnonzero((labels == labels[i]) & (np.arange(12) != i))[0]) for i in range(12)]
    np.testing.assert_allclose(out, _np(mirror_points(x, x[partner])), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    # In a functional model with labels as a second input; .keras round trip.
    emb = keras.Input((8,))
    lab = keras.Input((), dtype="int32")
    synth = SymmetricalSynthesis(synthesis_alpha=1.5, force_norm="point")(emb, lab)
    model = keras.Model([emb, lab], keras.layers.Concatenate(axis=0)([emb, synth]))
    loaded = _round_trip(model, tmp_path, [x, labels])
    assert loaded.layers[-2].get_config()["synthesis_alpha"] == 1.5
    with pytest.raises(ValueError, match="synthesis_alpha="):
        SymmetricalSynthesis(alpha=1.5)


def test_symmetrical_synthesis_layer_rejects_bad_input(batch):
    labels, x = batch
    with pytest.raises(ValueError, match="formula"):
        SymmetricalSynthesis(formula="x")
    with pytest.raises(ValueError, match="y_true"):
        SymmetricalSynthesis()(x, np.zeros((12, 2)))


def mirror_oracle(x, y, alpha, beta, formula, force_norm):
    """Symm eq. 1–2 for one point ``x`` and axis ``y``, straight from the paper (float64).

    A zero axis has no direction: projection 0 (the library's convention);
    norm forcing of a zero point leaves it zero.
    """
    yy = y @ y
    r = (x @ y) / yy * y if yy > 0 else np.zeros_like(x)  # eq. 1: (x·u) u, u = y/‖y‖
    out = beta * (alpha * (r - x) + x) if formula == "paper" else beta * (alpha * r - x)
    if force_norm is not None and np.linalg.norm(out) > 0:
        out = out * np.linalg.norm(x if force_norm == "point" else y) / np.linalg.norm(out)
    return out


def partner_oracle(labels):
    """The first other image of each class in batch order; itself for a class seen once."""
    partner = []
    for i, c in enumerate(labels):
        others = [j for j, d in enumerate(labels) if d == c and j != i]
        partner.append(others[0] if others else i)
    return partner


#: No P×2 layout: a class of 3, of 4 and singletons. Rows 1 (first of class 2, so the
#: axis of rows 5, 7, 8) and 6 (a singleton) are all zero in the test.
BAD_LABELS = np.array([5, 2, 5, 7, 5, 2, 9, 2, 2, 11], dtype="int32")
SYNTHESIS_SETTINGS = [
    {},
    {"formula": "released"},
    {"synthesis_alpha": 1.5, "synthesis_beta": 0.8},
    {"synthesis_alpha": 1.5, "formula": "released", "force_norm": "axis"},
    {"force_norm": "point"},
    {"synthesis_alpha": 3.0, "force_norm": "axis"},
]


def _settings_id(settings):
    return "-".join(f"{k}={v}" for k, v in settings.items()) or "default"


@pytest.mark.parametrize("settings", SYNTHESIS_SETTINGS, ids=_settings_id)
def test_symmetrical_synthesis_layer_defines_every_layout(rng, settings):
    """Any labelling, eagerly and under XLA (TF ``jit_compile``, ``jax.jit``; torch
    eagerly): each image is mirrored about the first other image of its class, an
    image of a class seen once about itself; finite values and gradients, also
    for an all-zero row."""
    labels = BAD_LABELS
    with pytest.raises(ValueError, match="exactly 2 times"):
        check_pk_layout(labels)  # the opt-in check still refuses it; the layer does not call it
    x = rng.normal(size=(len(labels), 6)).astype("float32")
    x[[1, 6]] = 0.0
    layer = SymmetricalSynthesis(**settings)
    alpha = settings.get("synthesis_alpha", 2.0)
    beta = settings.get("synthesis_beta", 1.0)
    partner = partner_oracle(labels)
    expected = np.stack([
        mirror_oracle(x[i].astype(np.float64), x[j].astype(np.float64), alpha, beta,
                      settings.get("formula", "paper"), settings.get("force_norm"))
        for i, j in enumerate(partner)
    ])
    np.testing.assert_array_equal(_np(partner_indices(ops.convert_to_tensor(labels))).astype(int), partner)
    weights = rng.normal(size=x.shape)

    def objective(e):
        return ops.sum(layer(e, labels) * ops.convert_to_tensor(weights, dtype=e.dtype))

    runs = {"eager": (_np(layer(x, labels)), value_and_gradient(objective, x)[1])}
    if keras.backend.backend() in ("tensorflow", "jax"):
        if keras.backend.backend() == "jax":
            import jax

            grad = jit(jax.grad(objective))(ops.convert_to_tensor(x))
        else:
            import tensorflow as tf

            def tf_grad(e):
                with tf.GradientTape() as tape:
                    tape.watch(e)
                    value = objective(e)
                return tape.gradient(value, e)

            grad = jit(tf_grad)(tf.convert_to_tensor(x))
        runs["compiled"] = (_np(jit(lambda e: layer(e, labels))(ops.convert_to_tensor(x))), _np(grad))
    for mode, (out, grad) in runs.items():
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=mode)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad)), mode
        np.testing.assert_array_equal(out[[1, 6]], 0.0)
    if "compiled" in runs:
        np.testing.assert_allclose(runs["compiled"][1], runs["eager"][1], rtol=1e-5, atol=1e-5)
    if not settings:  # α = 2, β = 1: a class seen once is its own mirror image
        np.testing.assert_allclose(runs["eager"][0][[3, 9]], x[[3, 9]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric,pairs,top_k", [("similarity", "official", 1), ("euclidean", "paper", 3)])
def test_hardest_pair_pooling_layer_matches_ops(batch, metric, pairs, top_k, tmp_path):
    labels, x = batch
    layer = HardestPairPooling(metric=metric, pairs=pairs, top_k=top_k, return_selection=True)
    pooled, synthetic = layer(x, labels)
    sets, _, _ = synthesize_pk_batch(labels, x)
    expected, _ = hardest_pair_pooling(sets, metric=metric, pairs=pairs, top_k=top_k)
    np.testing.assert_allclose(_np(pooled), _np(expected), rtol=1e-6)
    shape = (6, 6) + ((top_k,) if top_k > 1 else ())
    assert tuple(pooled.shape) == shape and tuple(synthetic.shape) == shape
    assert layer.compute_output_shape((12, 8)) == (shape, shape)
    assert set(np.unique(_np(synthetic))) <= {0.0, 1.0, 2.0}
    emb = keras.Input((8,), batch_size=12)
    lab = keras.Input((), batch_size=12, dtype="int32")
    model = keras.Model([emb, lab], HardestPairPooling(metric=metric, pairs=pairs, top_k=top_k)(emb, lab))
    assert tuple(model.output.shape) == shape
    _round_trip(model, tmp_path, [x, labels])


def test_hardest_pair_pooling_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="metric"):
        HardestPairPooling(metric="cos")
    with pytest.raises(ValueError, match="pairs"):
        HardestPairPooling(pairs="x")
    with pytest.raises(ValueError, match="top_k"):
        HardestPairPooling(pairs="official", top_k=7)
