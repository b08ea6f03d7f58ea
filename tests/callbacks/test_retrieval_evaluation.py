"""RetrievalEvaluation: metrics in History every N epochs, TensorBoard scalars, input forms, errors."""

import numpy as np
import pytest
import keras

from symm_keras.callbacks import RetrievalEvaluation
from symm_keras.evaluation import evaluate_embeddings


def _data(rng, num_classes=6, per_class=5, dim=8):
    labels = np.repeat(np.arange(num_classes), per_class)
    centres = rng.normal(size=(num_classes, dim)) * 3
    return (centres[labels] + rng.normal(size=(labels.size, dim))).astype("float32"), labels


def _model(dim=8):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(4)])


def test_metrics_reach_history_every_n_epochs(rng):
    x, labels = _data(rng)
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    callback = RetrievalEvaluation((x, labels), every_n_epochs=2, recall_ks=(1, 2), kmeans="keras")
    history = model.fit(x, np.zeros((len(x), 4)), epochs=4, verbose=0, callbacks=[callback])
    assert [epoch for epoch, _ in callback.results] == [1, 3]
    for name in ("val_recall@1", "val_recall@2", "val_r_precision", "val_map@r", "val_nmi", "val_f1"):
        assert len(history.history[name]) == 2, name
    # The logged value is the evaluation of the final weights.
    expected = evaluate_embeddings(model.predict(x, verbose=0), labels, recall_ks=(1, 2), kmeans="keras")
    assert history.history["val_recall@1"][-1] == pytest.approx(expected.recall[1])
    assert history.history["val_nmi"][-1] == pytest.approx(expected.nmi)


def test_tf_dataset_input_and_tensorboard_scalars(rng, tmp_path):
    import tensorflow as tf

    x, labels = _data(rng)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(7)
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    callback = RetrievalEvaluation(
        dataset, recall_ks=(1,), prefix="test_", log_dir=tmp_path, clustering=False
    )
    model.fit(x, np.zeros((len(x), 4)), epochs=2, verbose=0, callbacks=[callback])
    embeddings, seen_labels = callback.embed()
    np.testing.assert_array_equal(seen_labels, labels)
    np.testing.assert_allclose(embeddings, model.predict(x, verbose=0), atol=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"test_recall@1", "test_r_precision", "test_map@r"} <= tags
    assert "test_nmi" not in tags
    steps = [event.step for event in events.Tensors("test_recall@1")]
    assert steps == [0, 1]
    logged = tf.make_ndarray(events.Tensors("test_map@r")[-1].tensor_proto)
    assert float(logged) == pytest.approx(callback.results[-1][1].map_at_r, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"every_n_epochs": 0}, "every_n_epochs must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"prefix": None}, "prefix must be a string"),
    ],
)
def test_bad_arguments(rng, kwargs, message):
    x, labels = _data(rng)
    with pytest.raises(ValueError, match=message):
        RetrievalEvaluation((x, labels), **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="data has 3 inputs but 2 labels"):
        RetrievalEvaluation((np.ones((3, 2)), [0, 1]))
    with pytest.raises(ValueError, match="must be a tf.data.Dataset"):
        RetrievalEvaluation(np.ones((3, 2)))


def test_multi_output_model_is_refused(rng):
    x, labels = _data(rng)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, [keras.layers.Dense(4)(inputs), keras.layers.Dense(2)(inputs)])
    callback = RetrievalEvaluation((x, labels), recall_ks=(1,), clustering=False)
    callback.set_model(model)
    with pytest.raises(ValueError, match="single embedding output"):
        callback.on_epoch_end(0, {})


def test_every_n_steps_counts_steps_across_fit_calls(rng):
    x, labels = _data(rng)
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    callback = RetrievalEvaluation((x, labels), every_n_steps=3, initial_step=1, recall_ks=(1,), clustering=False)
    with pytest.raises(ValueError, match="every_n_steps"):
        RetrievalEvaluation((x, labels), every_n_steps=0)
    for _ in range(2):  # 2 fits × 2 epochs × 2 steps = steps 2..9 after the initial 1
        model.fit(x, np.zeros((len(x), 4)), batch_size=15, epochs=2, verbose=0, callbacks=[callback])
    assert [step for step, _ in callback.results] == [3, 6, 9]
    expected = evaluate_embeddings(model.predict(x, verbose=0), labels, recall_ks=(1,), clustering=False)
    assert callback.results[-1][1].recall[1] == pytest.approx(expected.recall[1])
