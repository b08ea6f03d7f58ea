"""Toy training run: DAMLRRM on asymmetric batches improves held-out Recall@1."""

import keras
import numpy as np

from symm_keras.data.samplers import AsymmetricSampler
from symm_keras.losses.damlrrm import DAMLRRMLoss
from symm_keras.metrics.damlrrm_parts import damlrrm_metrics


def _clustered_data(rng, classes=40, per_class=20, signal=8, nuisance=24):
    """Class identity lives in ``signal`` dims; ``nuisance`` dims of larger variance hide it.

    The same nuisance directions apply to every class, so an embedding that
    learns to ignore them on the training classes generalises to new classes.
    """
    centres = rng.normal(size=(classes, signal)) * 1.5
    labels = np.repeat(np.arange(classes), per_class)
    x_signal = centres[labels] + rng.normal(size=(len(labels), signal)) * 0.5
    x_noise = rng.normal(size=(len(labels), nuisance)) * 3.0
    mixing = np.linalg.qr(rng.normal(size=(signal + nuisance, signal + nuisance)))[0]
    x = np.concatenate([x_signal, x_noise], axis=1) @ mixing
    return x.astype("float32"), labels


def _recall_at_1(embeddings, labels):
    d = np.sum((embeddings[:, None, :] - embeddings[None, :, :]) ** 2, axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(labels[np.argmin(d, axis=1)] == labels))


def test_damlrrm_improves_held_out_recall_at_1():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x, y = _clustered_data(rng)
    train, test = y < 20, y >= 20
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    m, k, steps = 5, 4, 150
    sampler = AsymmetricSampler(y_train, classes_per_batch=m, images_per_class=k, seed=0)
    rows = np.concatenate([sampler.batch_rows(s) for s in range(steps)])
    options = dict(boundary=6.0, margin=0.5, neat_size=sampler.neat_size, images_per_class=k)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(16)])  # fmt: skip
    model.compile(optimizer=keras.optimizers.SGD(3e-3, momentum=0.9), loss=DAMLRRMLoss(**options),
                  metrics=damlrrm_metrics(**options))  # fmt: skip
    before = _recall_at_1(model.predict(x_test, verbose=0), y_test)
    history = model.fit(x_train[rows], y_train[rows], batch_size=sampler.batch_size, shuffle=False, epochs=1,
                        verbose=0).history  # fmt: skip
    after = _recall_at_1(model.predict(x_test, verbose=0), y_test)
    assert np.isfinite(history["loss"]).all()
    assert after > before + 0.2, (before, after)
