"""``--method smart_mining``: config rows, plan, and a tiny end-to-end run on digits."""

import json
import os

import pytest

from experiments import configs, methods, train
from symm_keras.callbacks.adaptive_kappa import AdaptiveKappa
from symm_keras.callbacks.smart_mining import SmartMining
from symm_keras.losses.smart_mining import SmartMiningLoss
from tests.experiments.helpers import digits, read_events, run_script, tiny_config


def test_rows_of_tables_1_2_and_studies_are_registered():
    names = configs.list_configs(paper="smart_mining")
    assert len(names) == 6 + 4 + 6
    row = configs.get_config("smart_mining_triplet_fanng_global_adaptive_cub")
    assert (row.embedding_dim, row.epochs, row.optimizer, row.lr, row.weight_decay, row.head_lr_multiplier) == (
        64, 20, "sgd", 0.1, 5e-4, 10.0)
    assert row.method_kwargs["adaptive"] and row.method_kwargs["source"] == "fanng"
    assert row.paper_results["recall@1"] == 49.78
    assert configs.get_config("smart_mining_triplet_fanng_cars196").loss_kwargs["global_weight"] == 0.0
    assert configs.get_config("smart_mining_kappa16_cub").method_kwargs["kappa"] == 16.0
    assert configs.get_config("smart_mining_mined30_cub").method_kwargs["mined_share"] == 0.3
    for name in names:
        SmartMiningLoss(**configs.get_config(name).loss_kwargs)
        methods.get_method("smart_mining")  # registered


def _cfg(**method_kwargs):
    kwargs = {"source": "exact", "triplets_per_batch": 20, "random_epochs": 1, **method_kwargs}
    return tiny_config("smart_mining", steps=None, epochs=3, lr=0.01, optimizer="sgd", l2_normalize=True,
                       method_kwargs=kwargs)


def test_plan_wires_feed_callbacks_and_metric():
    train_source, _ = digits()
    cfg = _cfg(adaptive=True)
    plan = methods.build_plan("smart_mining", methods.TrainingContext(config=cfg, train_source=train_source,
                                                                       model=None, seed=0, logdir=""))
    assert plan.batch_layout == "triplets" and isinstance(plan.loss, SmartMiningLoss)
    assert plan.steps_per_epoch == -(-len(train_source) // 20)
    kinds = [type(c) for c in plan.callbacks]
    assert kinds.index(AdaptiveKappa) < kinds.index(SmartMining)
    with pytest.raises(ValueError, match="unknown method_kwargs"):
        methods.build_plan("smart_mining", methods.TrainingContext(
            config=_cfg(kapa=1.0), train_source=train_source, model=None, seed=0, logdir=""))


def test_tiny_end_to_end_run_logs_mining(tmp_path):
    train_source, test_source = digits()
    cfg = _cfg()
    result = train.run_training(cfg, train_source, test_source, str(tmp_path), seed=0, tsne_points=0, verbose=0)
    with open(os.path.join(str(tmp_path), "results.json")) as f:
        saved = json.load(f)
    assert saved and result is not None
    events = read_events(os.path.join(str(tmp_path), "train"))
    spe = saved["steps_per_epoch"]
    for tag in ("kappa", "mined_share", "mining_seconds", "training_error"):
        assert tag in events, f"{tag} not in TensorBoard: {sorted(events)}"
    # one value per epoch at its last step; epoch 0 (random_epochs=1) has no mined triplets
    assert [step for step, _ in events["mined_share"]] == [spe, 2 * spe, 3 * spe]
    assert float(events["mined_share"][0][1]) == 0.0 and float(events["mined_share"][1][1]) > 0.0


def test_mined_first_epoch_starts_on_jax(tmp_path):
    """random_epochs=0: epoch 0 is mined before fit, so JAX (which reads a batch
    before on_epoch_begin) does not wait on an empty feed."""
    code = f"""
from experiments import train
from tests.experiments.helpers import digits, tiny_config
cfg = tiny_config("smart_mining", steps=None, epochs=2, lr=0.01, optimizer="sgd", l2_normalize=True,
                  method_kwargs={{"source": "exact", "triplets_per_batch": 20, "random_epochs": 0}})
train_source, test_source = digits()
train.run_training(cfg, train_source, test_source, {str(tmp_path)!r}, tsne_points=0, nn_queries=0, log_every=1,
                   verbose=0)
print("finished", flush=True)
"""
    done = run_script(code, env={"KERAS_BACKEND": "jax"}, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "finished" in done.stdout
    first_epoch = min(read_events(os.path.join(str(tmp_path), "train"))["mined_share"])
    assert float(first_epoch[1]) > 0.0  # epoch 0 was mined, not random
