"""Slow: a few real training steps of the GoogLeNet embedding model with Symm + N-pair."""

import keras
import numpy as np
import pytest
from keras import ops

from symm_keras.losses import SymmNPairLoss
from symm_keras.models import build_embedding_model, head_lr_multipliers, with_lr_multipliers


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["googlenet_caffe", "inception_v1"])
def test_fit_lowers_symm_npair_loss_on_a_fixed_batch(backbone, rng):
    keras.utils.set_random_seed(0)
    model = build_embedding_model(backbone, embedding_dim=64, input_size=96)
    model.compile(
        optimizer=with_lr_multipliers(keras.optimizers.Adam(1e-4), head_lr_multipliers(10.0)),
        loss=SymmNPairLoss(),
    )
    x = rng.normal(scale=50.0, size=(16, 96, 96, 3)).astype("float32")
    y = (np.arange(16) // 2).astype("int32")  # P×2: 8 classes, each twice
    head_before = ops.convert_to_numpy(model.get_layer("embedding_head").kernel).copy()
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0).history["loss"]
    assert all(np.isfinite(history))
    assert history[-1] < history[0]
    assert not np.allclose(ops.convert_to_numpy(model.get_layer("embedding_head").kernel), head_before)
