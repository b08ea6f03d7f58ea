"""Symm losses (eq. 4, 6, 8, 10 + released code) against float64 loop oracles."""

import math
import os

import keras
import numpy as np
import pytest

from symm_keras.losses import symm_angular, symm_lifted_structure, symm_npair
from symm_keras.losses import symm_contrastive, symm_multi_similarity, symm_semihard_triplet, symm_triplet
from symm_keras.losses.npair import npair_loss
from symm_keras.losses.triplet import triplet_loss
from symm_keras.ops.labels import concrete_value
from tests.losses import symm_oracles as oracle
from tests.losses.autodiff import computed_tolerance, float64_enabled
from tests.losses.symm_helpers import jit, pk_batch, torch_graph_breaks, value_and_grad

# (name, vectorised functional form, oracle, kwargs)
CASES = [
    ("triplet", symm_triplet.symm_triplet_loss, oracle.triplet, {}),
    ("triplet_triplets_top3", symm_triplet.symm_triplet_loss, oracle.triplet,
     {"average": "triplets", "top_k": 3, "margin": 0.5}),
    ("semihard", symm_semihard_triplet.symm_semihard_triplet_loss, oracle.semihard_triplet, {}),
    ("semihard_sq_top2", symm_semihard_triplet.symm_semihard_triplet_loss, oracle.semihard_triplet,
     {"distance_metric": "squared-L2", "top_k": 2}),
    ("lifted", symm_lifted_structure.symm_lifted_structure_loss, oracle.lifted_structure, {}),
    ("lifted_top4", symm_lifted_structure.symm_lifted_structure_loss, oracle.lifted_structure,
     {"top_k": 4, "margin": 0.5}),
    ("npair_official", symm_npair.symm_npair_loss, oracle.npair, {}),
    ("npair_paper", symm_npair.symm_npair_loss, oracle.npair, {"pairs": "paper"}),
    ("npair_paper_top3", symm_npair.symm_npair_loss, oracle.npair,
     {"pairs": "paper", "top_k": 3, "l2_reg": 0.0}),
    ("angular_official", symm_angular.symm_angular_loss, oracle.angular, {}),
    ("angular_paper", symm_angular.symm_angular_loss, oracle.angular, {"pairs": "paper", "angle": 36.0}),
    ("angular_paper_top5", symm_angular.symm_angular_loss, oracle.angular,
     {"pairs": "paper", "top_k": 5}),
    ("npair_alpha_released_norm", symm_npair.symm_npair_loss, oracle.npair,
     {"synthesis_alpha": 1.5, "synthesis_beta": 0.8, "formula": "released", "force_norm": "axis"}),
    ("triplet_alpha_paper_norm", symm_triplet.symm_triplet_loss, oracle.triplet,
     {"synthesis_alpha": 2.5, "force_norm": "point"}),
    ("contrastive", symm_contrastive.symm_contrastive_loss, oracle.contrastive, {}),
    ("contrastive_margin_released", symm_contrastive.symm_contrastive_loss, oracle.contrastive,
     {"margin": 2.0, "formula": "released", "synthesis_alpha": 1.5}),
    ("multi_similarity", symm_multi_similarity.symm_multi_similarity_loss, oracle.multi_similarity, {}),
    ("multi_similarity_unmined", symm_multi_similarity.symm_multi_similarity_loss, oracle.multi_similarity,
     {"mining": False, "base": 0.5, "negative_scale": 10.0}),
]
IDS = [c[0] for c in CASES]


# One fast batch shape (12 × 8) for every test keeps JAX's per-shape op compilation
# to one; other shapes run with -m slow.
SHAPES = [
    ("random", 6, 8),
    ("clustered", 6, 8),
    ("unit", 6, 8),
    pytest.param("random", 2, 3, marks=pytest.mark.slow),
    pytest.param("unit", 13, 16, marks=pytest.mark.slow),
    pytest.param("clustered", 32, 64, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,classes,dim", SHAPES)
def test_matches_loop_oracle(case, dtype, kind, classes, dim, rng):
    _, fn, ref, kwargs = case
    labels, x = pk_batch(rng, classes, dim, kind)
    if kind == "clustered" and fn in (symm_angular.symm_angular_loss, symm_npair.symm_npair_loss):
        x = x / 3.0  # keep softmax logits in a range float32 resolves to 1e-5
    expected = ref(labels, x, **kwargs)
    with float64_enabled():
        got = float(fn(labels, x.astype(dtype), **kwargs))
        tol = computed_tolerance(dtype, float32=2e-5, float64=1e-9)
    assert got == pytest.approx(expected, rel=tol, abs=tol)


@pytest.mark.parametrize("case", CASES[:12:2], ids=IDS[:12:2])
def test_batch_order_does_not_matter_and_labels_may_be_column(case, rng):
    """Labels, not positions, pair the images: any order keeping each anchor first."""
    _, fn, _, kwargs = case
    labels, x = pk_batch(rng, 6, 8, "unit", shuffle=False)
    x = x.astype("float32")
    # All anchors (even rows) in one class order, then all positives in another.
    order = np.concatenate([2 * rng.permutation(6), 2 * rng.permutation(6) + 1])
    a = float(fn(labels, x, **kwargs))
    b = float(fn(labels[order].reshape(-1, 1), x[order], **kwargs))
    assert a == pytest.approx(b, rel=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_matches_finite_differences(case, rng):
    """Autodiff gradient of the vectorised loss vs central differences of the oracle."""
    _, fn, ref, kwargs = case
    labels, x = pk_batch(rng, 6, 8, "unit")
    x = x.astype("float32")
    value, grad = value_and_grad(lambda e: fn(labels, e, **kwargs), x)
    assert np.all(np.isfinite(grad))
    x64 = x.astype("float64")
    eps = 1e-5
    for _ in range(4):  # directional derivatives along random directions
        v = rng.normal(size=x.shape)
        numeric = (ref(labels, x64 + eps * v, **kwargs) - ref(labels, x64 - eps * v, **kwargs)) / (2 * eps)
        assert float(np.sum(grad * v)) == pytest.approx(numeric, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("case", [CASES[1], CASES[6]], ids=[IDS[1], IDS[6]])
def test_jit_compiled_value_equals_eager(case, rng):
    _, fn, _, kwargs = case
    labels, x = pk_batch(rng, 6, 8, "random")
    x = x.astype("float32")
    eager = float(fn(labels, x, **kwargs))
    compiled = float(jit(lambda y, e: fn(y, e, **kwargs))(labels, x))
    assert compiled == pytest.approx(eager, rel=1e-5)


@pytest.mark.parametrize("case", CASES[:12:2], ids=IDS[:12:2])
@pytest.mark.parametrize("scale", [0.0, 1e4])
def test_zero_and_huge_embeddings_are_finite(case, scale, rng):
    _, fn, _, kwargs = case
    labels, x = pk_batch(rng, 6, 8, "unit")
    value, grad = value_and_grad(lambda e: fn(labels, e, **kwargs), (x * scale).astype("float32"))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("case", CASES[:12:2], ids=IDS[:12:2])
def test_bfloat16_embeddings_compute_in_float32(case, rng):
    _, fn, _, kwargs = case
    labels, x = pk_batch(rng, 6, 8, "unit")
    value = fn(labels, keras.ops.cast(x, "bfloat16"), **kwargs)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(float(value))


# --- analytic batches ------------------------------------------------------------


def _collapsed_batch(classes=6, dim=8):
    """Every embedding the same unit vector: all classes indistinguishable."""
    labels = np.repeat(np.arange(classes), 2)
    v = np.zeros((1, dim), "float32")
    v[0, :2] = [0.6, 0.8]
    return labels, np.tile(v, (2 * classes, 1))


def _perfect_batch(classes=6, scale=10.0, dim=8):
    """Anchor = positive, classes on orthogonal axes ``scale`` from the origin."""
    labels = np.repeat(np.arange(classes), 2)
    x = np.repeat(np.eye(classes, dim, dtype="float32") * scale, 2, axis=0)
    return labels, x


def test_all_wrong_batch_analytic_values():
    n, m = 6, 0.3
    labels, x = _collapsed_batch(n)
    # Triplet: every term is [0 − 0 + m]_+; 2(N−1) negative points per ordered pair.
    assert float(symm_triplet.symm_triplet_loss(labels, x, margin=m)) == pytest.approx(m * 2 * (n - 1))
    assert float(symm_triplet.symm_triplet_loss(labels, x, margin=m, average="triplets")) == pytest.approx(m)
    # Semi-hard: no negative is farther than the positive; hardest of the easy is 0.
    assert float(symm_semihard_triplet.symm_semihard_triplet_loss(labels, x, margin=m)) == pytest.approx(m)
    # Lifted: log(2(N−1) e^m) squared.
    lifted = symm_lifted_structure.symm_lifted_structure_loss(labels, x, margin=m)
    assert float(lifted) == pytest.approx((m + math.log(2 * (n - 1))) ** 2)
    # N-pair: all logits equal → log N (unit vectors: L2 term 0.25·λ·2).
    for pairs in ("official", "paper"):
        value = float(symm_npair.symm_npair_loss(labels, x, pairs=pairs))
        assert value == pytest.approx(math.log(n) + 0.25 * 0.002 * 2)


def test_perfect_batch_analytic_values():
    labels, x = _perfect_batch()
    assert float(symm_triplet.symm_triplet_loss(labels, x)) == 0.0
    assert float(symm_semihard_triplet.symm_semihard_triplet_loss(labels, x)) == 0.0
    assert float(symm_lifted_structure.symm_lifted_structure_loss(labels, x)) == 0.0
    for pairs in ("official", "paper"):
        value = float(symm_npair.symm_npair_loss(labels, x, pairs=pairs, l2_reg=0.0))
        assert value == pytest.approx(5 * math.exp(-100.0), abs=1e-30)
        value = float(symm_angular.symm_angular_loss(labels, x, pairs=pairs, l2_reg=0.0))
        assert 0.0 <= value < 1e-30


def test_symm_is_never_easier_than_its_baseline(rng):
    """Pooling adds harder candidates: Symm ≥ baseline for triplet (eq. 3 vs 4) and N-pair (7 vs 8)."""
    for _ in range(3):
        labels, x = pk_batch(rng, 6, 8, "unit")
        x = x.astype("float32")
        assert float(symm_triplet.symm_triplet_loss(labels, x)) >= float(triplet_loss(labels, x)) - 1e-6
        symm = float(symm_npair.symm_npair_loss(labels, x, pairs="paper"))
        assert symm >= float(npair_loss(labels, x)) - 1e-6


def test_single_class_batch_is_finite():
    labels = np.array([7, 7])
    x = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    # (Finiteness of every loss on a single class is in test_loss_contract.py.)
    # No negative class: triplet, lifted and N-pair terms vanish (N-pair keeps its L2 term).
    assert float(symm_triplet.symm_triplet_loss(labels, x)) == 0.0
    assert float(symm_lifted_structure.symm_lifted_structure_loss(labels, x)) == 0.0
    assert float(symm_npair.symm_npair_loss(labels, x, l2_reg=0.0)) == 0.0
    # Semi-hard with no negatives uses 0 like TF Addons: [m + √2 − 0]_+.
    semi = symm_semihard_triplet.symm_semihard_triplet_loss(labels, x, margin=1.0)
    assert float(semi) == pytest.approx(1.0 + math.sqrt(2.0))


# --- bad input ---------------------------------------------------------------------

ALL_FNS = [c[1] for c in CASES[:12:2]]


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn", ALL_FNS)
def test_other_layouts_use_the_first_two_images_of_each_class(fn, compiled, rng):
    """Any layout is defined, eagerly and compiled: the loss of the first two
    images of every class seen twice or more (the rest are unused)."""
    labels = np.array([5, 0, 0, 1, 0, 1, 1, 2, 3, 3, 5, 4])  # K = 3, 3, 2, 1, 2, 1
    x = rng.normal(size=(len(labels), 6)).astype("float32")
    keep = oracle.used_rows(labels)
    np.testing.assert_array_equal(labels[keep], [5, 0, 0, 1, 1, 3, 3, 5])
    run = jit(fn) if compiled else fn
    np.testing.assert_allclose(float(run(labels, x)), float(fn(labels[keep], x[keep])), rtol=1e-5, atol=1e-6)
    # A batch of singletons has no pair: 0 (N-pair / angular keep no L2 term either).
    assert float(run(np.arange(len(labels)), x)) == 0.0


def test_compiled_pairing_reads_no_label_value(rng):
    """The compiled loss pairs the images on traced labels (what makes it valid for any
    layout above). TensorFlow / JAX: ``concrete_value`` of the labels is None inside.
    Torch: dynamo traces ``.numpy()`` instead of refusing it, so a Python read of a
    label value would show as a graph break in our code (that part then runs eagerly);
    the only breaks are Keras's own ``ops.max``/``ops.min`` on torch."""
    labels = np.array([5, 0, 0, 1, 0, 1, 1, 2, 3, 3, 5, 4])
    x = rng.normal(size=(len(labels), 6)).astype("float32")
    fn = symm_npair.symm_npair_loss
    if keras.backend.backend() == "torch":
        breaks = torch_graph_breaks(fn, labels, x)
        assert all(f"keras{os.sep}src{os.sep}backend" in file for file, _, _ in breaks), breaks
        return
    seen = []

    def probe(y, e):
        seen.append(concrete_value(y))
        return fn(y, e)

    np.testing.assert_allclose(float(jit(probe)(labels, x)), float(fn(labels, x)), rtol=1e-5)
    assert seen and all(value is None for value in seen)


@pytest.mark.parametrize("fn", ALL_FNS)
def test_bad_shapes_are_rejected(fn):
    with pytest.raises(ValueError, match="y_true"):
        fn(np.zeros((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="y_pred"):
        fn(np.zeros(4), np.ones((4, 3, 1)))


def test_bad_arguments_are_rejected():
    labels, x = _collapsed_batch()
    with pytest.raises(ValueError, match="pairs"):
        symm_npair.symm_npair_loss(labels, x, pairs="all")
    with pytest.raises(ValueError, match="top_k > 1 needs pairs='paper'"):
        symm_npair.SymmNPairLoss(top_k=2)
    with pytest.raises(ValueError, match="top_k"):
        symm_triplet.SymmTripletLoss(top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        symm_npair.symm_npair_loss(labels, x, pairs="paper", top_k=17)
    with pytest.raises(ValueError, match="alpha"):
        symm_lifted_structure.SymmLiftedStructureLoss(alpha="2")
    with pytest.raises(ValueError, match="formula"):
        symm_triplet.symm_triplet_loss(labels, x, formula="tf1")
    with pytest.raises(ValueError, match="force_norm"):
        symm_angular.SymmAngularLoss(force_norm="unit")
    with pytest.raises(ValueError, match="angle must be in degrees"):
        symm_angular.SymmAngularLoss(angle=90)
    with pytest.raises(ValueError, match="distance_metric"):
        symm_semihard_triplet.SymmSemiHardTripletLoss(distance_metric="angular")
    with pytest.raises(ValueError, match="margin"):
        symm_triplet.SymmTripletLoss(margin=-1.0)


# --- classes -------------------------------------------------------------------------

CLASSES = [
    (symm_triplet.SymmTripletLoss, {"margin": 0.3, "top_k": 2, "average": "triplets"}),
    (symm_semihard_triplet.SymmSemiHardTripletLoss, {"distance_metric": "squared-L2"}),
    (symm_lifted_structure.SymmLiftedStructureLoss, {"margin": 0.5, "force_norm": "point"}),
    (symm_npair.SymmNPairLoss, {"pairs": "paper", "top_k": 2, "l2_reg": 0.01}),
    (symm_angular.SymmAngularLoss, {"angle": 40.0, "formula": "released", "synthesis_alpha": 1.8}),
]


@pytest.mark.parametrize("cls,kwargs", CLASSES, ids=[c[0].__name__ for c in CLASSES])
def test_class_config_round_trip_and_value(cls, kwargs, rng):
    loss = cls(**kwargs)
    assert cls.batch_layout == "pk" and cls.images_per_class == 2
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is cls and clone.get_config() == loss.get_config()
    labels, x = pk_batch(rng, 6, 8, "unit")
    x = x.astype("float32")
    assert float(clone(labels, x.astype("float32"))) == pytest.approx(float(loss(labels, x)), rel=1e-5)
