"""Config registry, method registry and the epoch segmentation of train.py."""

import pytest

from experiments import configs, methods, train
from experiments.configs import ExperimentConfig, symm
from symm_keras.losses.base import EmbeddingLoss


def test_every_symm_row_is_registered_with_paper_numbers():
    names = configs.list_configs(paper="symm")
    assert len(names) == 30  # 5 losses × {baseline, Symm} × 3 datasets
    for dataset, ks in (("cub", (1, 2, 4, 8)), ("cars196", (1, 2, 4, 8)), ("sop", (1, 10, 100))):
        for base, with_symm in symm.SYMM_METHOD_PAIRS:
            for method in (base, with_symm):
                cfg = configs.get_config(f"{method}_{dataset}")
                assert cfg.method == method and cfg.dataset == dataset
                assert set(cfg.paper_results) == {"nmi", "f1"} | {f"recall@{k}" for k in ks}
                # Symm Sec. "Implementation Details"
                assert (cfg.batch_size, cfg.classes_per_batch, cfg.images_per_class) == (128, 64, 2)
                assert (cfg.optimizer, cfg.lr, cfg.embedding_dim, cfg.input_size) == ("adam", 1e-4, 512, 227)
                assert cfg.head_lr_multiplier == 10.0
    assert configs.get_config("symm_npair_cub").paper_results["recall@1"] == 55.9
    assert configs.get_config("npair_sop").paper_results["nmi"] == 87.9
    assert configs.get_config("symm_lifted_cars196").paper_results["f1"] == 28.5
    # Triplet/lifted on L2-normalised features, N-pair/angular raw (paper).
    assert configs.get_config("symm_triplet_cub").l2_normalize
    assert not configs.get_config("symm_npair_cub").l2_normalize


def test_unknown_config_suggests_close_names():
    with pytest.raises(ValueError, match="symm_npair_cub"):
        configs.get_config("symm_npair_cubb")


def test_register_rejects_conflicts_and_bad_rows():
    cfg = configs.get_config("npair_cub")
    with pytest.raises(ValueError, match="registered twice"):
        configs.register_config(cfg.replace(lr=1.0))
    with pytest.raises(ValueError, match="dataset"):
        configs.register_config(ExperimentConfig(name="x_bad", dataset="mnist", method="npair"))
    with pytest.raises(ValueError, match="steps or epochs"):
        configs.register_config(ExperimentConfig(name="x_bad2", dataset="cub", method="npair", steps=1, epochs=1))


def test_every_pk_method_is_registered_and_builds_its_loss():
    from experiments.methods import pk_losses

    available = methods.available_methods()
    for method in pk_losses.PK_LOSSES:
        assert method in available
        cls = pk_losses.loss_class(method)
        assert issubclass(cls, EmbeddingLoss), method
        cls()  # the configs' default loss arguments construct


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown --method 'nope'"):
        methods.get_method("nope")


def test_method_plan_validates():
    with pytest.raises(TypeError, match="callable"):
        methods.MethodPlan(train_batches=None, loss=None, steps_per_epoch=1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        methods.MethodPlan(train_batches=lambda s: [], loss=None, steps_per_epoch=0)


@pytest.mark.parametrize(
    "start,total,spe,expected",
    [
        (0, 10, 5, [(0, 2, 5, 0)]),
        (0, 12, 5, [(0, 2, 5, 0), (2, 3, 2, 10)]),
        (3, 12, 5, [(0, 1, 2, 3), (1, 2, 5, 5), (2, 3, 2, 10)]),
        (7, 8, 5, [(1, 2, 1, 7)]),
        (10, 10, 5, []),
        (0, 3, 5, [(0, 1, 3, 0)]),
    ],
)
def test_fit_segments_respect_epoch_boundaries(start, total, spe, expected):
    segments = train.fit_segments(start, total, spe)
    assert segments == expected
    assert sum(s[2] * (s[1] - s[0]) for s in segments) == total - start


@pytest.mark.parametrize("method", ["symm_triplet", "symm_semihard", "symm_lifted", "symm_npair", "symm_angular"])
def test_symm_methods_log_the_hard_pair_ratio_configured_like_the_loss(method):
    from experiments.methods import pk_losses

    loss = pk_losses.loss_class(method)(**({"pairs": "paper"} if method == "symm_npair" else {}))
    metric = pk_losses.hard_pair_metric(method, loss)
    assert metric.name == "synthetic_hard_pair_ratio"
    expected = {"symm_triplet": "squared_euclidean", "symm_lifted": "euclidean", "symm_semihard": "euclidean"}
    assert metric.metric == expected.get(method, "similarity")
    if method == "symm_npair":
        assert metric.pairs == "paper"
