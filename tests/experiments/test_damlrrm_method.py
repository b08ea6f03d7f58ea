"""``--method damlrrm``: config rows, plan, and a tiny end-to-end run on digits."""

import os

import numpy as np
import pytest

from experiments import configs, methods, train
from symm_keras.callbacks.sampling_size import SamplingSize
from symm_keras.losses.damlrrm import DAMLRRMLoss
from tests.experiments.helpers import digits, read_events, tiny_config


def test_rows_of_tables_1_to_7_are_registered():
    names = configs.list_configs(paper="damlrrm")
    assert len(names) == 3 + 4 + 5 + 1 + 2
    for dataset, k, m in (("cub", 5, 12), ("cars196", 5, 12), ("sop", 3, 20)):
        cfg = configs.get_config(f"damlrrm_{dataset}")
        assert (cfg.method, cfg.images_per_class, cfg.classes_per_batch) == ("damlrrm", k, m)
        assert (cfg.optimizer, cfg.lr, cfg.head_lr_multiplier, cfg.steps) == ("sgd", 1e-4, 10.0, 40000)
        assert cfg.method_kwargs == {"shuffled_size": 60} and not cfg.l2_normalize
        assert cfg.loss_kwargs == {"boundary": 30.0, "margin": 0.5}
        assert train.default_config_name("damlrrm", dataset) == f"damlrrm_{dataset}"
    assert configs.get_config("damlrrm_cub").paper_results["recall@1"] == 55.1
    assert configs.get_config("damlrrm_sop").paper_results["recall@100"] == 93.2
    assert configs.get_config("damlrrm_boundary26_cub").loss_kwargs["boundary"] == 26.0
    assert configs.get_config("damlrrm_margin0p7_cub").loss_kwargs["margin"] == 0.7
    assert configs.get_config("damlrrm_ours1_cub").loss_kwargs["terms"] == "shuffled"
    full = configs.get_config("damlrrm_fullpps_cub")
    assert full.loss_kwargs["positive_pairs"] == "all" and full.loss_kwargs["terms"] == "graph"
    assert full.paper_results["recall@16"] == 90.1
    for name in names:  # every row's loss arguments construct
        DAMLRRMLoss(**configs.get_config(name).loss_kwargs)


def _context(cfg):
    train_source, _ = digits()
    return methods.TrainingContext(config=cfg, train_source=train_source, model=None, seed=0, logdir="")


def test_plan_batches_follow_the_damlrrm_layout():
    cfg = tiny_config("damlrrm", classes_per_batch=3, images_per_class=3, method_kwargs={"shuffled_size": 7})
    plan = methods.build_plan("damlrrm", _context(cfg))
    assert plan.batch_layout == "damlrrm" == type(plan.loss).batch_layout
    assert plan.loss.get_config()["neat_size"] == 9 and plan.loss.get_config()["images_per_class"] == 3
    assert any(isinstance(c, SamplingSize) for c in plan.callbacks)
    x, y = next(iter(plan.train_batches(4)))
    assert x.shape[0] == y.shape[0] == 16
    neat = np.asarray(y[:9])
    assert sorted(np.unique(neat, return_counts=True)[1]) == [3, 3, 3]
    x2, y2 = next(iter(plan.train_batches(4)))  # deterministic in (seed, step)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown method_kwargs"):
        methods.build_plan("damlrrm", _context(tiny_config("damlrrm", method_kwargs={"pool": 3})))
    with pytest.raises(ValueError, match="unknown loss_kwargs"):
        methods.build_plan("damlrrm", _context(tiny_config("damlrrm", loss_kwargs={"neat_size": 3})))
    with pytest.raises(ValueError, match=r"unknown loss_kwargs \['alpha'\].*α is boundary"):
        methods.build_plan("damlrrm", _context(tiny_config("damlrrm", loss_kwargs={"alpha": 30.0})))
    with pytest.raises(ValueError, match="images per class"):
        methods.build_plan("damlrrm", _context(tiny_config("damlrrm", images_per_class=1)))


def test_tiny_training_run_logs_parts_and_sampling_size(tmp_path):
    train_source, test_source = digits()
    cfg = tiny_config("damlrrm", loss_kwargs={"boundary": 3.0, "margin": 0.5}, steps=20, eval_every=10)
    result = train.run_training(cfg, train_source, test_source, str(tmp_path), seed=0, log_every=5,
                                tsne_points=100, nn_queries=2, nn_k=2, verbose=0)  # fmt: skip
    assert 0.0 <= result["metrics"]["recall@1"] <= 1.0
    events = read_events(os.path.join(str(tmp_path), "train"))
    for tag in ("loss", "damlrrm_graph_loss", "damlrrm_shuffled_loss", "damlrrm_violating_pairs",
                "damlrrm_mean_tree_edge", "sampling_size", "distinct_images"):
        assert tag in events and np.isfinite([float(v) for _, v in events[tag]]).all(), tag
