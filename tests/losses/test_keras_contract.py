"""The Keras loss contract (issue 17): per-sample values under ``reduction`` /
``sample_weight`` / ``class_weight``, exact integer labels, every batch layout
defined inside ``model.fit`` (compiled or not), and loading a saved model in a
fresh process after only ``import symm_keras``."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from symm_keras.losses import DAMLRRMLoss, GlobalLoss, RatioTripletLoss, SmartMiningLoss, TripletLoss
from tests.conftest import REPO_ROOT
from tests.losses.autodiff import to_numpy
from tests.losses.discovery import discover_losses, images_per_class
from tests.losses.symm_oracles import used_rows
from tests.losses.toy_data import clustered_embeddings, pk_labels

PK_LOSSES = discover_losses("pk")
BATCH_LEVEL = [(GlobalLoss, "triplet"), (SmartMiningLoss, "triplet"), (DAMLRRMLoss, "damlrrm")]


def _batch(rng, loss_class, num_classes=5, dim=6):
    labels = pk_labels(rng, num_classes, images_per_class(loss_class)).astype("int64")
    return labels, clustered_embeddings(rng, labels, dim, spread=0.8).astype("float32")


def _value(loss, labels, x, **kwargs):
    return to_numpy(loss(labels, x, **kwargs))


@pytest.mark.parametrize("loss_class", PK_LOSSES, ids=lambda c: c.__name__)
def test_reduction_none_sum_and_sample_weight(loss_class, rng):
    labels, x = _batch(rng, loss_class)
    batch = len(labels)
    value = float(_value(loss_class(), labels, x))
    per_sample = _value(loss_class(reduction="none"), labels, x)
    assert per_sample.shape == (batch,)
    np.testing.assert_allclose(per_sample.mean(), value, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(_value(loss_class(reduction="sum"), labels, x)), batch * value, rtol=1e-5)
    # Keras's sum_over_batch_size: Σ w_b v_b / B; weights scale each row's terms.
    weights = np.linspace(0.0, 2.0, batch).astype("float32")
    weighted = float(_value(loss_class(), labels, x, sample_weight=weights))
    np.testing.assert_allclose(weighted, np.sum(weights * per_sample) / batch, rtol=1e-5, atol=1e-7)
    assert abs(weighted - value) > 1e-4 * max(abs(value), 1e-3), (weighted, value)
    # Zero weight on every row: nothing left.
    assert float(_value(loss_class(), labels, x, sample_weight=np.zeros(batch, "float32"))) == 0.0


def test_ratio_triplet_loss_has_per_triplet_values(rng):
    labels = np.array([0, 1, 2, 0, 1, 2, 3, 4, 5])
    x = rng.normal(size=(9, 4)).astype("float32")
    per_sample = _value(RatioTripletLoss(reduction="none"), labels, x)
    np.testing.assert_allclose(per_sample[:3], per_sample[3:6])
    np.testing.assert_allclose(per_sample.mean(), float(_value(RatioTripletLoss(), labels, x)), rtol=1e-6)


@pytest.mark.parametrize("loss_class,layout", BATCH_LEVEL, ids=lambda v: getattr(v, "__name__", v))
def test_batch_level_losses_refuse_per_sample_options(loss_class, layout, rng):
    labels = np.array([0, 1, 2, 0, 1, 2, 3, 4, 5]) if layout == "triplet" else np.repeat(np.arange(4), 2)
    x = rng.normal(size=(len(labels), 4)).astype("float32")
    with pytest.raises(ValueError, match="no per-sample form"):
        loss_class(reduction="none")(labels, x)
    with pytest.raises(ValueError, match="no per-sample form"):
        loss_class()(labels, x, sample_weight=np.ones(len(labels), "float32"))


@pytest.mark.parametrize("loss_class", PK_LOSSES, ids=lambda c: c.__name__)
def test_labels_are_compared_exactly_above_2_to_the_24(loss_class, rng):
    labels, x = _batch(rng, loss_class)
    classes = np.unique(labels)
    big = (2**24 + np.searchsorted(classes, labels)).astype("int64")  # 2**24, 2**24 + 1, ...
    small = np.searchsorted(classes, labels).astype("int64")
    expected = float(_value(loss_class(), small, x))
    np.testing.assert_allclose(float(_value(loss_class(), big, x)), expected, rtol=1e-6)
    # As float32 these labels merge: refused instead of silently merged.
    with pytest.raises(ValueError, match="cannot be told apart"):
        loss_class()(big.astype("float32"), x)
    # Float labels that float32 holds exactly are fine.
    np.testing.assert_allclose(float(_value(loss_class(), small.astype("float32"), x)), expected, rtol=1e-6)


def test_int64_labels_beyond_int32():
    labels = np.array([2**40, 2**40 + 1, 2**40, 2**40 + 1], dtype="int64")
    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.8, 0.1]], "float32")
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            with pytest.raises(ValueError, match="int32 range"):
                TripletLoss()(labels, x)
            return
    expected = float(_value(TripletLoss(), np.array([0, 1, 0, 1]), x))
    np.testing.assert_allclose(float(_value(TripletLoss(), labels, x)), expected, rtol=1e-6)


# --- inside model.fit ------------------------------------------------------------------

PAIR_LOSSES = [cls for cls in PK_LOSSES if getattr(cls, "images_per_class", None)]


def _frozen_model(dim):
    """A model that does not move (SGD with learning rate 0): the logged loss is the
    loss of the initial model on the batch."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(8)])


@pytest.mark.parametrize("jit_compile", [False, True], ids=["no_jit", "jit"])
@pytest.mark.parametrize("loss_class", PAIR_LOSSES, ids=lambda c: c.__name__)
def test_fit_on_shuffled_data_uses_the_defined_pairs(loss_class, jit_compile, rng):
    """``model.fit(x, y, batch_size=24)`` on ordinary shuffled data: the batch is
    no P×2 batch; inside the compiled train step the loss is its documented
    value (pairs of the first two images of each class), not 0 or a wrong pairing."""
    labels = rng.integers(0, 14, size=24)  # classes appear 0 to 4 times
    x = rng.normal(size=(24, 6)).astype("float32")
    model = _frozen_model(6)
    loss = loss_class()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, jit_compile=jit_compile)
    history = model.fit(x, labels, batch_size=24, epochs=1, shuffle=False, verbose=0)
    logged = history.history["loss"][0]
    keep = used_rows(labels)
    expected = float(to_numpy(loss(labels[keep], model(x[keep]))))
    assert expected > 0.0
    np.testing.assert_allclose(logged, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["no_jit", "jit"])
def test_fit_class_weight_weights_each_row(jit_compile, rng):
    labels, x = _batch(rng, TripletLoss, num_classes=4)
    labels = np.searchsorted(np.unique(labels), labels)
    model = _frozen_model(x.shape[1])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=TripletLoss(), jit_compile=jit_compile)
    class_weight = {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    history = model.fit(x, labels, batch_size=len(labels), class_weight=class_weight, verbose=0)
    per_sample = to_numpy(TripletLoss(reduction="none")(labels, model(x)))
    weights = np.array([class_weight[int(c)] for c in labels])
    np.testing.assert_allclose(history.history["loss"][0], np.mean(weights * per_sample), rtol=1e-4)


# --- saving ----------------------------------------------------------------------------

_LOAD_SCRIPT = """
import json, sys
import keras, symm_keras
# Loading compiles the model from its config: every loss and metric class is looked up.
print("LOADED " + json.dumps({p: type(keras.models.load_model(p).loss).__name__ for p in sys.argv[1:]}))
"""


def _registered(kind):
    """Every symm_keras class registered for saving of this kind (loss/metric/layer)."""
    base = {"loss": keras.losses.Loss, "metric": keras.metrics.Metric, "layer": keras.layers.Layer}[kind]
    import symm_keras  # noqa: F401  (registers everything)

    return sorted(
        (name, cls)
        for name, cls in keras.saving.get_custom_objects().items()
        if name.startswith("symm_keras>") and isinstance(cls, type) and issubclass(cls, base)
    )


def test_every_loss_and_metric_loads_in_a_fresh_process(tmp_path):
    """Save models compiled with each registered loss and metric here; load them
    in a new interpreter that imports nothing but ``keras`` and ``symm_keras``."""
    from symm_keras.distribute import GlobalBatchLoss, GlobalBatchMetric
    from symm_keras.losses import TripletTrainingError
    from symm_keras.metrics import DAMLRRMLossPart, LossPart, SyntheticHardPairRatio

    losses = [cls() for _, cls in _registered("loss") if cls is not GlobalBatchLoss]
    losses.append(GlobalBatchLoss(TripletLoss()))
    assert len(losses) >= 17
    metrics = [
        LossPart(TripletLoss(), "active_share"),
        SyntheticHardPairRatio(),
        DAMLRRMLossPart("graph_loss"),
        TripletTrainingError(),
        GlobalBatchMetric(SyntheticHardPairRatio(name="global_ratio")),
    ]
    assert {type(m) for m in metrics} == {cls for _, cls in _registered("metric")}
    paths = {}
    for loss in losses:
        name = type(loss).__name__
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer="sgd", loss=loss, metrics=metrics if name == "TripletLoss" else None)
        paths[name] = str(tmp_path / f"{name}.keras")
        model.save(paths[name])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, *paths.values()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("LOADED ")][-1]
    loaded = json.loads(line[len("LOADED ") :])
    for name, path in paths.items():
        assert loaded[path] == name


# --- one name per concept ---------------------------------------------------------------


def test_one_name_per_concept():
    """``angle=`` (degrees), ``margin=``, ``synthesis_alpha=``/``synthesis_beta=``,
    ``l2_reg=``, DAMLRRM's ``boundary=``: no loss, layer or metric takes a bare
    ``alpha``/``beta`` (the backbone's LRN layer is no metric-learning piece), and
    the old names fail with the new one."""
    import inspect

    from symm_keras.losses import AngularLoss, DAMLRRMLoss, SymmAngularLoss, SymmNPairLoss

    offenders, checked = [], []
    for kind in ("loss", "layer", "metric"):
        for name, cls in _registered(kind):
            if cls.__module__.startswith("symm_keras.models"):
                continue  # Caffe LRN's alpha/beta are its paper's symbols
            checked.append(name)
            params = set(inspect.signature(cls.__init__).parameters)
            if params & {"alpha", "beta"}:
                offenders.append(name)
    assert not offenders
    assert any("DAMLRRM" in name for name in checked)
    with pytest.raises(ValueError, match="angle="):
        AngularLoss(alpha=30)
    with pytest.raises(ValueError, match="synthesis_alpha="):
        SymmAngularLoss(alpha=30)
    with pytest.raises(ValueError, match="synthesis_beta="):
        SymmNPairLoss(beta=0.5)
    with pytest.raises(ValueError, match="boundary="):
        DAMLRRMLoss(alpha=30)
    with pytest.raises(ValueError, match="margin="):
        DAMLRRMLoss(beta=0.5)
    assert "margin" in inspect.signature(DAMLRRMLoss.__init__).parameters
    # The angle of both angular losses has the same name and meaning.
    labels, x = np.repeat(np.arange(4), 2), np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    assert AngularLoss(angle=30).get_config()["angle"] == SymmAngularLoss(angle=30).get_config()["angle"] == 30
    assert float(_value(AngularLoss(angle=30), labels, x)) != float(_value(AngularLoss(angle=45), labels, x))


# --- imports: no TensorFlow / numba needed -------------------------------------------------

_BLOCKED_IMPORT_SCRIPT = """
import sys
sys.modules["tensorflow"] = sys.modules["numba"] = None  # as if not installed: importing them fails
import numpy as np
import symm_keras
from symm_keras import layers, losses, metrics, ops
labels, x = np.repeat(np.arange(4), 2), np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
values = [float(cls()(labels, x)) for cls in (losses.SymmNPairLoss, losses.TripletLoss, losses.MultiSimilarityLoss)]
ratio = metrics.SyntheticHardPairRatio()
ratio.update_state(labels, x)
print("OK", values, float(ratio.result()), sorted(m for m in ("tensorflow", "numba") if sys.modules.get(m)))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_losses_layers_metrics_import_and_run_without_tensorflow_or_numba(backend):
    pytest.importorskip(backend)
    env = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("OK ")][-1]
    assert line.endswith("[]"), line
