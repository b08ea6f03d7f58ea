"""DAMLRRM graph + shuffled loss vs a numpy loop oracle of eq. 4–6 (issue 6 reading)."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.losses.damlrrm import (
    DAMLRRMLoss,
    check_damlrrm_layout,
    damlrrm_graph_loss,
    damlrrm_loss,
    damlrrm_loss_parts,
    damlrrm_shuffled_loss,
)
from symm_keras.metrics.damlrrm_parts import DAMLRRMLossPart, damlrrm_metrics
from tests.losses.autodiff import computed_dtype, computed_tolerance, value_and_gradient

# ---------------------------------------------------------------- numpy oracle


def _prim_tree(points):
    """Prim's algorithm exactly as listed in Sec. 3.3: returns the edge set."""
    visited, unvisited, edges = [0], list(range(1, len(points))), set()
    while unvisited:
        best = None
        for i in visited:
            for j in unvisited:
                d = np.linalg.norm(points[i] - points[j])
                if best is None or d < best[0]:
                    best = (d, i, j)
        _, i, j = best
        edges.add((min(i, j), max(i, j)))
        visited.append(j)
        unvisited.remove(j)
    return edges


def _oracle(labels, emb, boundary, margin, neat_size, terms="both", positive_pairs="tree"):
    """Loop over pairs, float64: returns (L, L_g, L_s, P_g, P_s, mean tree edge)."""
    labels = np.asarray(labels).reshape(-1)
    emb = np.asarray(emb, dtype="float64")
    x, lx = emb[:neat_size], labels[:neat_size]
    s, ls = emb[neat_size:], labels[neat_size:]
    dist = lambda a, b: float(np.sqrt(np.sum((a - b) ** 2)))  # noqa: E731

    tree = set()
    for c in np.unique(lx):
        idx = np.flatnonzero(lx == c)
        tree |= {(idx[a], idx[b]) for a, b in _prim_tree(x[idx])}
    graph_sum, graph_count = 0.0, 0
    for i, j in itertools.combinations(range(neat_size), 2):
        d = dist(x[i], x[j])
        if lx[i] == lx[j]:
            if positive_pairs == "all" or (i, j) in tree:
                h = max(d - boundary + margin, 0.0)  # PP term of eq. 4
            else:
                continue
        else:
            h = max(boundary + margin - d, 0.0)  # NP term of eq. 4
        graph_sum += h * h
        graph_count += h > 0
    shuffled_sum, shuffled_count = 0.0, 0
    for j in range(len(s)):
        same = [i for i in range(neat_size) if lx[i] == ls[j]]
        if same:
            i_nn = min(same, key=lambda i: dist(x[i], s[j]))  # top-1 nearest positive
            h = max(dist(x[i_nn], s[j]) - boundary + margin, 0.0)
            shuffled_sum += h * h
            shuffled_count += h > 0
        for i in range(neat_size):
            if lx[i] != ls[j]:
                h = max(boundary + margin - dist(x[i], s[j]), 0.0)
                shuffled_sum += h * h
                shuffled_count += h > 0
    l_g = graph_sum / max(graph_count, 1)
    l_s = shuffled_sum / max(shuffled_count, 1)
    if terms == "graph":
        l_s, shuffled_count = 0.0, 0
    if terms == "shuffled":
        l_g, graph_count = 0.0, 0
    mean_edge = np.mean([dist(x[i], x[j]) for i, j in tree]) if tree else 0.0
    return l_g + l_s, l_g, l_s, graph_count, shuffled_count, mean_edge


def _batch(rng, m=4, k=3, shuffled=12, dim=8, scale=12.0, classes=10):
    neat_classes = rng.choice(classes, m, replace=False)
    neat_labels = rng.permutation(np.repeat(neat_classes, k))
    shuffled_labels = rng.integers(0, classes, shuffled)
    labels = np.concatenate([neat_labels, shuffled_labels]).astype("int32")
    centres = rng.normal(size=(classes, dim)) * scale
    emb = centres[labels] + rng.normal(size=(len(labels), dim)) * scale * 0.6
    return labels, emb


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _jit(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, jit-compiled on JAX (its op-by-op eager mode is slow).

    Layout checks need concrete labels, so tests of those call the loss directly.
    """
    if keras.backend.backend() != "jax":
        return fn(*args, **kwargs)
    import jax

    return jax.jit(lambda *a: fn(*a, **kwargs))(*args)


def _rtol():
    """Tolerance for float64 input in the dtype the backend really computes it in."""
    return computed_tolerance("float64", float32=1e-4, float64=1e-9)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "terms,positive_pairs",
    [("both", "tree"), ("graph", "tree"), ("shuffled", "tree"), ("graph", "all"), ("both", "all")],
)
def test_matches_loop_oracle(rng, dtype, terms, positive_pairs):
    labels, emb = _batch(rng)
    parts = _jit(
        damlrrm_loss_parts, labels, emb.astype(dtype), boundary=30.0, margin=0.5, neat_size=12, images_per_class=3,
        terms=terms, positive_pairs=positive_pairs,
    )
    loss, l_g, l_s, p_g, p_s, mean_edge = _oracle(labels, emb, 30.0, 0.5, 12, terms, positive_pairs)
    out_dtype = _np(parts["loss"]).dtype
    assert out_dtype in (np.dtype(dtype), np.dtype(computed_dtype(dtype)))  # torch may hand float32 back as float64
    rtol = computed_tolerance(dtype, float32=1e-4, float64=1e-10)
    assert p_g + p_s > 0 and (terms == "shuffled" or l_g > 0)
    np.testing.assert_allclose(_np(parts["loss"]), loss, rtol=rtol)
    np.testing.assert_allclose(_np(parts["graph_loss"]), l_g, rtol=rtol)
    np.testing.assert_allclose(_np(parts["shuffled_loss"]), l_s, rtol=rtol)
    assert _np(parts["violating_pairs"]) == p_g + p_s
    np.testing.assert_allclose(_np(parts["mean_tree_edge"]), mean_edge, rtol=rtol)


@pytest.mark.parametrize("seed", range(3))
def test_matches_oracle_random_layouts(seed):
    rng = np.random.default_rng(seed)
    m, k, shuffled = [(12, 5, 60), (5, 3, 7), (2, 2, 1)][seed]
    labels, emb = _batch(rng, m=m, k=k, shuffled=shuffled, classes=m + 6, scale=float(rng.uniform(5, 20)))
    value = _jit(damlrrm_loss, labels, emb, neat_size=m * k, images_per_class=k)
    np.testing.assert_allclose(_np(value), _oracle(labels, emb, 30.0, 0.5, m * k)[0], rtol=_rtol())


def test_golden_value_by_hand():
    # 1-D embeddings, α = 3, β = 0.5: positives should be < 2.5 apart, negatives > 3.5.
    neat = [0.0, 1.0, 10.0, 13.5]  # classes 0, 0, 1, 1 — tree edges (0,1)=1 ok, (10,13.5)=3.5 → 1²
    shuffled = [5.0, 11.0, 3.0]  # classes 0, 1, 7
    labels = np.array([0, 0, 1, 1, 0, 1, 7])
    emb = np.array(neat + shuffled)[:, None]
    # NN: 5→1 (4 − 2.5 = 1.5 → 2.25); 11→10 ok. NP_s: 3 vs 0 (0.5² = 0.25), 3 vs 1 (1.5² = 2.25).
    parts = _jit(damlrrm_loss_parts, labels, emb, boundary=3.0, margin=0.5, neat_size=4, images_per_class=2)
    np.testing.assert_allclose(_np(parts["graph_loss"]), 1.0)
    np.testing.assert_allclose(_np(parts["shuffled_loss"]), 4.75 / 3)
    np.testing.assert_allclose(_np(parts["loss"]), 1.0 + 4.75 / 3)
    assert _np(parts["violating_pairs"]) == 4
    np.testing.assert_allclose(_np(parts["mean_tree_edge"]), (1.0 + 3.5) / 2)


def test_tree_is_looser_than_all_pairs(rng):
    labels, emb = _batch(rng, m=6, k=5, shuffled=30)
    options = dict(neat_size=30, images_per_class=5, terms="graph")
    tree = _jit(damlrrm_loss_parts, labels, emb, **options)
    full = _jit(damlrrm_loss_parts, labels, emb, positive_pairs="all", **options)
    assert _np(tree["graph_violations"]) <= _np(full["graph_violations"])


# ---------------------------------------------------------------- edge cases


def _gradient(labels, emb, **kwargs):
    compiled = keras.backend.backend() == "jax"  # JAX's op-by-op eager mode is slow
    return value_and_gradient(lambda e: damlrrm_loss(labels, e, **kwargs), emb, "float64", compiled=compiled)[1]


def test_gradients_finite_and_match_oracle_finite_differences(rng):
    labels, emb = _batch(rng, m=3, k=3, shuffled=5, dim=4)
    grad = _gradient(labels, emb, neat_size=9, images_per_class=3)
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    eps = 1e-6
    for idx in [(0, 0), (4, 2), (10, 1), (13, 3)]:
        plus, minus = emb.copy(), emb.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric = (_oracle(labels, plus, 30.0, 0.5, 9)[0] - _oracle(labels, minus, 30.0, 0.5, 9)[0]) / (2 * eps)
        np.testing.assert_allclose(grad[idx], numeric, rtol=_rtol() * 10, atol=1e-5)


def test_singleton_and_unseen_classes_in_shuffled_stream(rng):
    labels, emb = _batch(rng, m=3, k=2, shuffled=4)
    labels[6:] = [100, 101, labels[0], 102]  # three classes absent from the neat stream
    value = _jit(damlrrm_loss, labels, emb.astype("float32"), neat_size=6, images_per_class=2)
    np.testing.assert_allclose(_np(value), _oracle(labels, emb, 30.0, 0.5, 6)[0], rtol=1e-4)
    assert np.isfinite(_gradient(labels, emb, neat_size=6)).all()


def test_identical_points_no_nan():
    labels = np.array([0, 0, 1, 1, 0, 1, 2, 2])
    emb = np.zeros((8, 4))
    value = _np(_jit(damlrrm_loss, labels, emb))
    # Every negative pair sits at distance 0: hinge (α + β)² each, positives satisfied.
    np.testing.assert_allclose(value, 2 * 30.5**2)
    grad = _gradient(labels, emb)
    assert np.isfinite(grad).all()


def test_no_violating_pair_gives_zero_loss_and_gradient():
    labels = np.array([0, 0, 1, 1, 0, 1])
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0], [101.0, 0.0], [0.5, 0.0], [100.5, 0.0]])
    parts = _jit(damlrrm_loss_parts, labels, emb, neat_size=4)
    assert _np(parts["loss"]) == 0.0 and _np(parts["violating_pairs"]) == 0
    np.testing.assert_array_equal(_gradient(labels, emb, neat_size=4), np.zeros_like(emb))


def test_any_neat_layout_is_defined_eager_and_compiled(rng):
    # A neat stream of 2 classes × 3 images declared as k = 2: Prim grows the larger classes
    # on, so the loss equals the general form (images_per_class=None) and the paper oracle,
    # eagerly and compiled; the opt-in check names the layout.
    labels, emb = _batch(rng, m=2, k=3, shuffled=6)
    expected = _oracle(labels, emb, 30.0, 0.5, 6)[0]
    for images_per_class in (2, None):

        def loss(y, x, images_per_class=images_per_class):
            return damlrrm_loss(y, x, images_per_class=images_per_class, neat_size=6)

        compiled = loss
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            compiled = tf.function(loss, jit_compile=True)
        elif keras.backend.backend() == "jax":
            import jax

            compiled = jax.jit(loss)
        for fn in (loss, compiled):  # torch: eager only (no XLA)
            np.testing.assert_allclose(_np(fn(labels, emb.astype("float32"))), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="m classes × 2 images"):
        check_damlrrm_layout(labels[:6], 2)


def test_bad_sizes_error(rng):
    labels, emb = _batch(rng, m=2, k=3, shuffled=6)
    with pytest.raises(ValueError, match="not a multiple of images_per_class"):
        damlrrm_loss(labels, emb, neat_size=5, images_per_class=3)
    with pytest.raises(ValueError, match="odd batch size"):
        damlrrm_loss(labels[:11], emb[:11])
    with pytest.raises(ValueError, match="larger than the batch"):
        damlrrm_loss(labels, emb, neat_size=20)
    with pytest.raises(ValueError, match="needs a shuffled stream"):
        damlrrm_loss(labels, emb, neat_size=12)
    # The graph-only ablation may use a batch without a shuffled stream.
    assert np.isfinite(_np(_jit(damlrrm_loss, labels, emb, neat_size=12, terms="graph")))
    with pytest.raises(ValueError, match="terms must be one of"):
        DAMLRRMLoss(terms="neat")
    with pytest.raises(ValueError, match="positive_pairs must be one of"):
        DAMLRRMLoss(positive_pairs="nearest")
    with pytest.raises(ValueError, match="margin must be ≥ 0"):
        DAMLRRMLoss(margin=-1.0)
    with pytest.raises(ValueError, match="boundary and margin must be finite"):
        DAMLRRMLoss(boundary=float("inf"))
    with pytest.raises(ValueError, match="y_true has 11 labels"):
        damlrrm_loss(labels[:11], emb)
    with pytest.raises(ValueError, match="part must be one of"):
        DAMLRRMLossPart("hardness")


def test_paper_symbols_are_refused_with_the_family_names():
    # One name per concept (issue 17): the paper's boundary α and margin β are boundary= and margin=.
    for make in (DAMLRRMLoss, lambda **options: DAMLRRMLossPart("loss", **options)):
        with pytest.raises(ValueError, match="no option 'alpha': the boundary α .* is boundary="):
            make(alpha=30.0)
        with pytest.raises(ValueError, match="no option 'beta': the margin β .* is margin="):
            make(beta=0.5)
    with pytest.raises(TypeError, match="alpha"):
        damlrrm_loss_parts(np.zeros(4, "int32"), np.zeros((4, 2), "float32"), alpha=30.0)


def test_stream_functional_forms_agree_with_parts(rng):
    labels, emb = _batch(rng, m=4, k=3, shuffled=12)
    parts = _jit(damlrrm_loss_parts, labels, emb, neat_size=12, images_per_class=3)
    graph = _jit(damlrrm_graph_loss, labels[:12], emb[:12], images_per_class=3)
    shuffled = _jit(damlrrm_shuffled_loss, labels[:12], emb[:12], labels[12:], emb[12:])
    np.testing.assert_allclose(_np(graph), _np(parts["graph_loss"]), rtol=1e-6)
    np.testing.assert_allclose(_np(shuffled), _np(parts["shuffled_loss"]), rtol=1e-6)


# ---------------------------------------------------------------- Keras integration


def test_config_round_trip_and_serialization():
    loss = DAMLRRMLoss(boundary=28.0, margin=0.3, neat_size=60, images_per_class=5, terms="graph", positive_pairs="all")
    assert DAMLRRMLoss.batch_layout == "damlrrm"
    clone = DAMLRRMLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, DAMLRRMLoss) and restored.get_config() == loss.get_config()
    metric = DAMLRRMLossPart("mean_tree_edge", images_per_class=5)
    assert DAMLRRMLossPart.from_config(metric.get_config()).get_config() == metric.get_config()
    with pytest.raises(TypeError, match="reduction"):
        DAMLRRMLossPart("loss", reduction="sum")  # not a loss option: it would vanish from get_config


def test_loss_class_matches_functional(rng):
    labels, emb = _batch(rng)
    loss = DAMLRRMLoss(neat_size=12, images_per_class=3)
    np.testing.assert_allclose(
        _np(_jit(loss, labels, emb.astype("float32"))),
        _np(_jit(damlrrm_loss, labels, emb, neat_size=12, images_per_class=3)),
        rtol=1e-5,
    )


def test_jit_fit_logs_parts(rng):
    m, k, dim = 4, 3, 6
    steps, batch = 3, 2 * m * k
    xs, ys = [], []
    for _ in range(steps):
        labels, emb = _batch(rng, m=m, k=k, shuffled=m * k, dim=dim, scale=1.0)
        xs.append(emb.astype("float32"))
        ys.append(labels)
    x, y = np.concatenate(xs), np.concatenate(ys)
    options = dict(boundary=3.0, margin=0.5, images_per_class=k)
    model = keras.Sequential([keras.Input((dim,)), keras.layers.Dense(8)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=DAMLRRMLoss(**options),
        metrics=damlrrm_metrics(**options),
        jit_compile=True,
    )
    history = model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0).history
    for key in ("loss", "damlrrm_graph_loss", "damlrrm_shuffled_loss", "damlrrm_violating_pairs",
                "damlrrm_mean_tree_edge"):
        assert key in history and np.isfinite(history[key]).all(), key
    # The logged parts describe the optimised objective.
    np.testing.assert_allclose(
        history["loss"][-1], history["damlrrm_graph_loss"][-1] + history["damlrrm_shuffled_loss"][-1], rtol=1e-4
    )
