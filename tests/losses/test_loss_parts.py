"""Loss parts (``*_loss_parts`` + ``symm_keras.metrics.LossPart``): every part
composes exactly to the optimised loss, matches numpy loop oracles, and is
logged by ``model.fit`` under its ``<prefix>_<part>`` name."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.losses import (
    AngularLoss,
    ContrastiveLoss,
    DAMLRRMLoss,
    LiftedStructureLoss,
    NPairLoss,
    SemiHardTripletLoss,
    SmartMiningLoss,
    SymmNPairLoss,
    SymmTripletLoss,
    TripletLoss,
)
from symm_keras.metrics import DAMLRRMLossPart, LossPart, loss_part_metrics
from tests.losses import oracles, symm_oracles
from tests.losses.autodiff import computed_tolerance, float64_enabled, to_numpy, value_and_gradient
from tests.losses.discovery import discover_losses, images_per_class
from tests.losses.toy_data import clustered_embeddings, pk_labels

PK_LOSSES = discover_losses("pk")


def _pk_batch(loss_class, seed=0, classes=5, dim=6, spread=0.6):
    rng = np.random.default_rng(seed)
    labels = pk_labels(rng, classes, images_per_class(loss_class)).astype("int32")
    return labels, clustered_embeddings(rng, labels, dim, spread=spread)


def _values(parts):
    return {key: float(to_numpy(value)) for key, value in parts.items()}


def _run(fn, x, dtype="float32"):
    """``fn(x)`` — traced once on JAX (op-by-op dispatch is slow there), eager on TF."""
    x = ops.convert_to_tensor(x, dtype=dtype)
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)(x)
    return fn(x)


def _parts(loss, labels, x, dtype="float32"):
    return _values(_run(lambda e: loss.parts(labels, e), x, dtype))


def _check_composition(loss, labels, x, dtype):
    value, parts = _run(lambda e: (loss(labels, e), loss.parts(labels, e)), x, dtype)  # one trace on JAX
    value, parts = float(to_numpy(value)), _values(parts)
    tol = computed_tolerance(dtype, float32=1e-6, float64=1e-12)
    assert set(parts) == {"loss", *loss.part_names}
    assert parts["loss"] == pytest.approx(value, rel=tol, abs=tol)
    assert sum(parts[s] for s in loss.summands) == pytest.approx(value, rel=tol, abs=tol)
    for key in loss.diagnostics:
        if key.endswith("share"):
            assert 0.0 <= parts[key] <= 1.0, key
    assert all(math.isfinite(v) for v in parts.values())
    return parts


def test_every_pk_loss_reports_parts():
    assert PK_LOSSES, "no P×K losses discovered"
    for loss_class in PK_LOSSES:
        assert loss_class.parts_fn is not None, loss_class.__name__
        assert loss_class.parts_prefix, loss_class.__name__


@pytest.mark.parametrize("loss_class", PK_LOSSES, ids=lambda c: c.__name__)
def test_parts_compose_to_the_loss_float32_and_float64(loss_class):
    loss32 = loss_class()
    labels, x = _pk_batch(loss_class)
    _check_composition(loss32, labels, x, "float32")
    with float64_enabled():
        _check_composition(loss_class(dtype="float64"), labels, x, "float64")


@pytest.mark.parametrize(
    "loss",
    [
        AngularLoss(with_npair=True, angular_weight=2.0),
        SymmNPairLoss(pairs="paper", top_k=2),
        SymmTripletLoss(top_k=3, average="triplets"),
        NPairLoss(symmetric=True, l2_reg=0.01),
    ],
    ids=lambda loss: loss.name,
)
def test_parts_compose_with_non_default_options(loss):
    labels, x = _pk_batch(type(loss), seed=1)
    _check_composition(loss, labels, x, "float32")


def test_parts_compose_under_compilation():
    """The traced loss (tf.function / jax.jit) equals the sum of the traced parts."""
    loss = AngularLoss(with_npair=True)
    labels, x = _pk_batch(AngularLoss, seed=2)
    value, grad = value_and_gradient(lambda e: loss(labels, e), x, compiled=True)
    parts_sum, parts_grad = value_and_gradient(
        lambda e: sum(loss.parts(labels, e)[s] for s in loss.summands), x, compiled=True
    )
    np.testing.assert_allclose(parts_sum, value, rtol=1e-6)
    np.testing.assert_allclose(parts_grad, grad, rtol=1e-5, atol=1e-7)
    assert np.isfinite(parts_grad).all()


# ---------------------------------------------------------------- loop oracles


def _triplet_active_oracle(labels, x, margin):
    """Share of the triplets of eq. 3 with ``D²_ij − D²_ik + m > 0``."""
    active = total = 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j or labels[i] != labels[j]:
                continue
            for k in range(len(labels)):
                if labels[k] != labels[i]:
                    total += 1
                    active += np.sum((x[i] - x[j]) ** 2) - np.sum((x[i] - x[k]) ** 2) + margin > 0
    return active / max(total, 1)


def _lifted_active_oracle(labels, x, margin):
    """Share of ordered positive pairs with ``J_ij > 0`` (eq. 5)."""
    d = lambda i, j: math.sqrt(float(np.sum((x[i] - x[j]) ** 2)))  # noqa: E731
    active = total = 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j or labels[i] != labels[j]:
                continue
            total += 1
            s = sum(math.exp(margin - d(i, k)) for k in range(len(labels)) if labels[k] != labels[i])
            s += sum(math.exp(margin - d(j, k)) for k in range(len(labels)) if labels[k] != labels[j])
            active += s > 0 and math.log(s) + d(i, j) > 0
    return active / max(total, 1)


def _contrastive_parts_oracle(labels, x, margin):
    positive = negative = 0.0
    pairs = active = negatives = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d = math.sqrt(float(np.sum((x[i] - x[j]) ** 2)))
            pairs += 1
            if labels[i] == labels[j]:
                positive += 0.5 * d * d
            else:
                negatives += 1
                active += d < margin
                negative += 0.5 * max(margin - d, 0.0) ** 2
    return positive / pairs, negative / pairs, active / max(negatives, 1)


def _symm_triplet_active_oracle(labels, x, margin, top_k=1):
    """Share of the (class pair, k-th hardest pair) terms of eq. 4 with a non-zero hinge."""
    pts = symm_oracles.class_points(labels, x)
    active = total = 0
    for ci, (a, p, _, _) in pts.items():
        for ck in pts:
            if ck == ci:
                continue
            pooled = sorted(float(np.sum((u - v) ** 2)) for u in pts[ci] for v in pts[ck])[:top_k]
            for d_neg in pooled:
                total += 1
                active += float(np.sum((a - p) ** 2)) - d_neg + margin > 0
    return active / max(total, 1)


def test_parts_match_loop_oracles(rng):
    for labels, x in oracles.random_batches(rng, balanced_only=True)[2:3]:
        x32 = x.astype("float32")
        parts = _parts(NPairLoss(l2_reg=0.01), labels, x32)
        softmax = oracles.npair_oracle(labels, x, l2_reg=0.0)
        assert parts["softmax"] == pytest.approx(softmax, rel=1e-4, abs=1e-5)
        assert parts["l2"] == pytest.approx(oracles.npair_oracle(labels, x, l2_reg=0.01) - softmax, rel=1e-4, abs=1e-6)

        parts = _parts(AngularLoss(with_npair=True, angular_weight=2.0), labels, x32)
        assert parts["npair"] == pytest.approx(softmax, rel=1e-4, abs=1e-5)
        angular = oracles.angular_oracle(labels, x, l2_reg=0.0)
        assert parts["angular"] == pytest.approx(2.0 * angular, rel=1e-4, abs=1e-5)

        parts = _parts(TripletLoss(margin=0.5), labels, x32)
        assert parts["active_share"] == pytest.approx(_triplet_active_oracle(labels, x, 0.5), abs=1e-6)
        parts = _parts(LiftedStructureLoss(margin=1.0), labels, x32)
        assert parts["active_share"] == pytest.approx(_lifted_active_oracle(labels, x, 1.0), abs=1e-6)
        parts = _parts(ContrastiveLoss(margin=4.0), labels, x32)
        positive, negative, active = _contrastive_parts_oracle(labels, x, 4.0)
        assert parts["positive"] == pytest.approx(positive, rel=1e-4, abs=1e-6)
        assert parts["negative"] == pytest.approx(negative, rel=1e-4, abs=1e-6)
        assert parts["active_share"] == pytest.approx(active, abs=1e-6)
        parts = _parts(SymmTripletLoss(margin=0.0), labels, x32)
        assert parts["active_share"] == pytest.approx(_symm_triplet_active_oracle(labels, x, 0.0), abs=1e-6)
        assert 0.0 < parts["active_share"] < 1.0


def test_semihard_active_share_golden():
    """TF Addons' golden batch: labels [0, 0], both positive pairs violate (loss 2.414)."""
    parts = _parts(SemiHardTripletLoss(), np.array([0, 0]), np.array([[0.0, 1.0], [1.0, 0.0]], "float32"))
    assert parts["loss"] == pytest.approx(2.4142137, rel=1e-6)
    assert parts["active_share"] == 1.0


def test_lifted_active_share_on_separated_and_overlapping_classes():
    """Far-apart classes with m = 0: every J_ij < 0 (share 0); a third class
    on top of class 0 makes the pairs of classes 0 and 2 active (4 of 6)."""
    x = np.array([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]], "float32")
    labels = np.array([0, 0, 1, 1])
    assert _parts(LiftedStructureLoss(margin=0.0), labels, x)["active_share"] == 0.0
    x = np.concatenate([x, [[0.05, 0.0], [0.05, 0.1]]]).astype("float32")
    labels = np.array([0, 0, 1, 1, 2, 2])
    share = _parts(LiftedStructureLoss(margin=0.0), labels, x)["active_share"]
    assert share == pytest.approx(_lifted_active_oracle(labels, x.astype("float64"), 0.0)) == pytest.approx(4 / 6)


def test_no_positive_pair_gives_zero_share_without_nan():
    labels = np.arange(6)
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    for loss in (TripletLoss(), LiftedStructureLoss(), SemiHardTripletLoss()):
        parts = _parts(loss, labels, x)
        assert parts["loss"] == 0.0 and parts["active_share"] == 0.0


def test_smart_mining_and_damlrrm_parts_compose():
    rng = np.random.default_rng(3)
    t = 6
    labels = np.concatenate([np.arange(t), np.arange(t), np.arange(t) + 10]).astype("int32")
    x = rng.normal(size=(3 * t, 5)).astype("float32")
    loss = SmartMiningLoss(global_weight=0.5)
    _check_composition(loss, labels, x, "float32")
    labels = np.concatenate([np.repeat(np.arange(4), 3), rng.integers(0, 6, size=12)]).astype("int32")
    x = rng.normal(scale=10.0, size=(24, 5)).astype("float32")
    _check_composition(DAMLRRMLoss(neat_size=12, images_per_class=3), labels, x, "float32")


# ---------------------------------------------------------------- the metric


def test_loss_part_names_config_round_trip_and_errors():
    metric = LossPart(SymmNPairLoss(pairs="paper", l2_reg=0.01), "l2")
    assert metric.name == "symm_npair_l2"
    clone = LossPart.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, LossPart) and restored.loss.get_config()["pairs"] == "paper"
    assert [m.name for m in loss_part_metrics(NPairLoss())] == ["npair_softmax", "npair_l2"]
    assert [m.name for m in loss_part_metrics(AngularLoss())] == ["angular_angular", "angular_l2"]
    assert [m.name for m in loss_part_metrics(AngularLoss(with_npair=True))] == [
        "angular_npair", "angular_angular", "angular_l2"]  # fmt: skip
    assert [m.name for m in loss_part_metrics(TripletLoss())] == ["triplet_active_share"]
    with pytest.raises(ValueError, match="part of NPairLoss must be one of"):
        LossPart(NPairLoss(), "active_share")
    with pytest.raises(ValueError, match="reports parts"):
        LossPart(keras.losses.MeanSquaredError(), "loss")
    # DAMLRRMLossPart keeps its own name and config on top of LossPart.
    part = DAMLRRMLossPart("violating_pairs", images_per_class=3)
    assert isinstance(part, LossPart) and part.name == "damlrrm_violating_pairs"
    assert set(part.get_config()) == {"name", "dtype", "part", "boundary", "margin", "neat_size", "images_per_class",
                                      "terms", "positive_pairs"}  # fmt: skip


def test_fit_logs_parts_that_add_up_to_the_loss():
    """``model.fit`` logs ``npair_softmax`` and ``npair_l2``; per epoch their
    means add up to the logged loss (same batches, same weights)."""
    rng = np.random.default_rng(4)
    classes, dim, steps = 6, 8, 3
    xs, ys = [], []
    for _ in range(steps):
        labels = pk_labels(rng, classes, 2).astype("int32")
        xs.append(clustered_embeddings(rng, labels, dim, spread=0.5).astype("float32"))
        ys.append(labels)
    x, y = np.concatenate(xs), np.concatenate(ys)
    model = keras.Sequential([keras.Input((dim,)), keras.layers.Dense(4, kernel_initializer="glorot_uniform")])
    loss = NPairLoss(l2_reg=0.05)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=loss_part_metrics(loss))
    history = model.fit(x, y, batch_size=2 * classes, epochs=1, shuffle=False, verbose=0).history
    assert {"npair_softmax", "npair_l2"} <= set(history)
    total = history["npair_softmax"][0] + history["npair_l2"][0]
    assert total == pytest.approx(history["loss"][0], rel=1e-5)
    assert history["npair_l2"][0] > 0.0


def test_metrics_of_one_loss_share_one_parts_evaluation_per_batch():
    loss = NPairLoss()
    metrics = loss_part_metrics(loss)
    labels, x = _pk_batch(NPairLoss, seed=5)
    calls = []
    original = loss.parts
    loss.parts = lambda y_true, y_pred: calls.append(1) or original(y_true, y_pred)
    y_true, y_pred = ops.convert_to_tensor(labels), ops.convert_to_tensor(x.astype("float32"))
    for metric in metrics:
        metric.update_state(y_true, y_pred)
    assert len(calls) == 1
    for metric in metrics:  # numpy inputs (mutable) are never shared
        metric.update_state(labels, x.astype("float32"))
    assert len(calls) == 3
    expected = _values(original(labels, x.astype("float32")))
    for metric, part in zip(metrics, ("softmax", "l2")):
        assert float(to_numpy(metric.result())) == pytest.approx(expected[part], rel=1e-6)
