"""The offline digits task of ``make demo`` and the tests: data and MLP backbone.

scikit-learn's digits (1,797 8×8 images, pixel values /16), classes 0–4 for
training and 5–9 for testing, embedded by a small MLP whose last layer is the
``embedding_head`` (the layer ``--head_lr_multiplier`` addresses).
"""

import numpy as np

TRAIN_CLASSES = (0, 1, 2, 3, 4)
TEST_CLASSES = (5, 6, 7, 8, 9)


def digits_sources(train_classes=TRAIN_CLASSES, test_classes=TEST_CLASSES):
    """Train/test :class:`experiments.sources.ArraySource` of scikit-learn's digits, split by class."""
    from sklearn.datasets import load_digits

    from experiments.sources import ArraySource

    digits = load_digits()
    x, y = digits.data.astype("float32") / 16.0, digits.target.astype("int64")
    train = ArraySource(x[np.isin(y, train_classes)], y[np.isin(y, train_classes)], name="digits-train")
    test = ArraySource(x[np.isin(y, test_classes)], y[np.isin(y, test_classes)], name="digits-test")
    return train, test


def mlp_embedding_model(input_dim, embedding_dim, hidden=(128,), l2_normalize=False, seed=0):
    """Small MLP backbone + Glorot-initialised ``embedding_head`` (digits, tests)."""
    import keras

    inputs = keras.Input((input_dim,), name="features")
    h = inputs
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", name=f"backbone_dense_{i}",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))(h)  # fmt: skip
    out = keras.layers.Dense(embedding_dim, name="embedding_head",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100))(h)  # fmt: skip
    if l2_normalize:
        out = keras.layers.UnitNormalization(axis=-1, name="l2_normalize")(out)
    return keras.Model(inputs, out, name="mlp_embedding")
