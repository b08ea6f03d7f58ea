"""A train.py run of a P×K method writes the loss parts to TensorBoard, and
the logged parts add up to the logged loss at every step (issue 5)."""

import os

import numpy as np
import pytest

from experiments import train
from tests.experiments.helpers import digits, read_events, tiny_config


@pytest.mark.parametrize("method, parts", [("npair", ("npair_softmax", "npair_l2"))])
def test_train_run_logs_parts_that_add_up_to_the_loss(tmp_path, method, parts):
    train_source, test_source = digits()
    cfg = tiny_config(method, steps=12, eval_every=0, checkpoint_every=0, loss_kwargs={"l2_reg": 0.05})
    train.run_training(cfg, train_source, test_source, str(tmp_path), seed=0, log_every=4, tsne_points=0,
                       nn_queries=0, verbose=0)  # fmt: skip
    events = read_events(os.path.join(str(tmp_path), "train"))
    steps = [s for s, _ in events["loss"]]
    assert steps == [4, 8, 12]
    for tag in parts:
        assert [s for s, _ in events[tag]] == steps, tag
    total = np.sum([[float(v) for _, v in events[tag]] for tag in parts], axis=0)
    np.testing.assert_allclose(total, [float(v) for _, v in events["loss"]], rtol=1e-5)
    assert all(float(v) > 0 for _, v in events["npair_l2"])
