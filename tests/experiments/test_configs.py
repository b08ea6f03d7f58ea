"""Config registry and recipes, and the method registry."""

import json

import pytest

from experiments import configs, methods
from experiments.configs import ExperimentConfig, recipes, symm
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
                # paper Sec. "Implementation Details" (batch 128) and the released code (64 × 2)
                assert (cfg.batch_size, cfg.classes_per_batch, cfg.images_per_class) == (128, 64, 2)
                assert (cfg.optimizer, cfg.lr, cfg.embedding_dim, cfg.input_size) == ("adam", 1e-4, 512, 227)
                assert cfg.recipe == "official" and set(cfg.recipes) == {"paper"}
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


SYMM_ROWS = [symm.symm_config_name(m, d) for d in ("cub", "cars196", "sop") for pair in symm.SYMM_METHOD_PAIRS
             for m in pair]  # fmt: skip
PLAN_KEYS = {"steps", "batch", "optimizer", "lr_schedule", "lr_at_step", "weight_decay", "head_multiplier",
             "preprocessing", "loss", "evaluation", "reported_result", "sources", "recipe"}  # fmt: skip


@pytest.mark.parametrize("recipe", ["official", "paper"])
@pytest.mark.parametrize("name", SYMM_ROWS)
def test_every_symm_row_resolves_to_a_json_plan(name, recipe):
    plan = json.loads(json.dumps(recipes.resolve_recipe(name, recipe)))
    assert PLAN_KEYS <= set(plan) and plan["recipe"] == recipe
    assert plan["steps"] == 10000  # train.py --max_steps=10000 (the paper states none: marked)
    assert plan["lr_at_step"] == pytest.approx({"0": 1e-4, "4999": 1e-4, "5000": 5e-5, "10000": 2.5e-5,
                                                "15000": 1e-5})  # fmt: skip
    assert plan["weight_decay"]["form"] == "coupled" and plan["weight_decay"]["value"] == 5e-3
    assert plan["batch"]["batch_size"] == 128
    for setting in ("steps", "lr_schedule", "weight_decay", "batch", "optimizer", "head_multiplier", "loss_weight",
                    "pipeline", "eval_metric", "reported_result"):
        assert plan["sources"][setting], setting
    if recipe == "official":
        head = plan["head_multiplier"]
        assert (head["value"], head["kind"], head["effective"]) == (10.0, "gradient", 1.0)
        assert plan["preprocessing"]["pipeline"] == "symm_official" and plan["preprocessing"]["resize"] == 255
        assert plan["preprocessing"]["bbox_crop"] == name.endswith("cars196")  # cooking_CARS.py
        assert plan["evaluation"]["distance"] == "cosine" and plan["reported_result"]["primary"] == "best_recall@1"
        assert plan["backbone"]["kwargs"] == {"lrn": "symm_official"}
    else:
        assert (plan["head_multiplier"]["value"], plan["head_multiplier"]["kind"]) == (1.0, "learning_rate")
        assert plan["preprocessing"]["pipeline"] == "paper" and plan["preprocessing"]["resize"] == 256
        assert not plan["preprocessing"]["bbox_crop"]
        assert plan["sources"]["lr_schedule"].startswith("not stated in the paper; from the released code")
        normalised = plan["method"] in ("triplet", "semihard", "lifted", "symm_triplet", "symm_semihard", "symm_lifted")
        assert plan["evaluation"]["distance"] == ("euclidean" if normalised else "cosine")


def test_loss_weights_are_the_released_codes():
    methods_ = ("npair", "symm_npair", "angular", "symm_angular")
    weight = {m: recipes.resolve_config(f"{m}_cub").loss_weight for m in methods_}
    assert weight == {"npair": 1.0, "symm_npair": 1.0, "angular": 2.0, "symm_angular": 1.0}  # train.py w_*


def test_recipes_round_trip_and_unknown_recipes_are_named():
    official = configs.get_config("symm_npair_cub")
    paper = recipes.apply_recipe(official, "paper")
    assert paper.loss_kwargs == {"pairs": "paper"} and paper.recipe == "paper"
    back = recipes.apply_recipe(paper, "official")
    for key in ("pipeline", "resize", "preprocessing", "head_lr_multiplier", "head_multiplier_kind", "loss_kwargs"):
        assert getattr(back, key) == getattr(official, key), key
    with pytest.raises(ValueError, match="has no recipe 'official'.*only the Symm paper"):
        recipes.resolve_config("damlrrm_cub", "official")
    with pytest.raises(ValueError, match="has no recipe 'fast'"):
        recipes.resolve_config("npair_cub", "fast")


def test_damlrrm_evaluates_raw_features_with_euclidean_distance_and_both_learning_rates_run():
    default = recipes.resolve_recipe("damlrrm_cub")
    assert default["evaluation"]["distance"] == "euclidean" and not default["backbone"]["l2_normalize"]  # Sec. 4.3
    assert default["optimizer"]["lr"] == 1e-4
    assert recipes.resolve_recipe("damlrrm_cub", "paper_lr1e-3")["optimizer"]["lr"] == 1e-3  # "10e-4" literally


def test_smart_mining_rows_use_caffe_decay_the_epoch_schedule_and_a_hand_kappa():
    row = recipes.resolve_config("smart_mining_triplet_fanng_cub")
    assert (row.weight_decay, row.weight_decay_form) == (5e-4, "coupled")
    spe = recipes.steps_per_epoch(row)
    assert spe == 147  # ceil(5,864 / 40 triplets)
    schedule = recipes.build_lr_schedule(row)
    assert [schedule.value_at(s) for s in (0, 3 * spe - 1, 3 * spe, 6 * spe)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    kappa = recipes.build_kappa_schedule(row)
    assert kappa.kappa_for_epoch(2) == 4.0 and kappa.kappa_for_epoch(19) == 1.0
    adaptive = recipes.resolve_config("smart_mining_triplet_fanng_global_adaptive_cub")
    assert recipes.build_kappa_schedule(adaptive) is None
    assert recipes.build_kappa_schedule(recipes.resolve_config("smart_mining_kappa64_cub")).kappa_for_epoch(2) == 64.0


def test_build_optimizer_follows_the_recipe():
    import keras

    from symm_keras.models import build_embedding_model
    from symm_keras.models.lr_multiplier import LRMultiplierMixin
    from symm_keras.optimizers import CoupledDecayMixin, StaircaseDecay

    model = build_embedding_model("mobilenet_v2", embedding_dim=8, weights=None, input_size=32)
    official = recipes.build_optimizer(recipes.resolve_config("symm_npair_cub"), model)
    assert isinstance(official, CoupledDecayMixin) and isinstance(official, keras.optimizers.Adam)
    assert not isinstance(official, LRMultiplierMixin)
    assert official.coupled_weight_decay == 5e-3 and official.gradient_multipliers == {"^embedding_head/": 10.0}
    assert isinstance(official._learning_rate, StaircaseDecay)
    paper = recipes.build_optimizer(recipes.resolve_config("symm_npair_cub", "paper"), model)
    assert not isinstance(paper, LRMultiplierMixin) and paper.gradient_multipliers == {}
    sgd = recipes.build_optimizer(recipes.resolve_config("smart_mining_triplet_fanng_cub"), model)
    assert isinstance(sgd, LRMultiplierMixin) and isinstance(sgd, CoupledDecayMixin) and sgd.weight_decay is None
    with pytest.raises(ValueError, match="needs the model"):
        recipes.build_optimizer(recipes.resolve_config("symm_npair_cub"))


def test_reported_results_give_the_last_and_the_best_recall_at_1():
    cfg = configs.get_config("symm_npair_cub")
    history = [{"step": 0, "recall@1": 0.40}, {"step": 100, "recall@1": 0.55}, {"step": 200, "recall@1": 0.50}]
    report = recipes.reported_results(cfg, history)
    assert report["last"]["step"] == 200 and report["best_recall@1"]["step"] == 100
    assert "chosen on the test set" in report["best_recall@1"]["label"] and report["reported"] == "best_recall@1"


def test_register_rejects_bad_recipe_fields():
    with pytest.raises(ValueError, match="pipeline must be one of"):
        configs.register_config(ExperimentConfig(name="x_bad3", dataset="cub", method="npair", steps=1,
                                                 pipeline="imagenet"))  # fmt: skip
    with pytest.raises(ValueError, match="unknown keys"):
        configs.register_config(ExperimentConfig(name="x_bad4", dataset="cub", method="npair", steps=1,
                                                 recipes={"fast": {"changes": {"nope": 1}}}))  # fmt: skip


@pytest.mark.parametrize("recipe", ["official", "paper"])
def test_every_symm_recipe_constructs_its_loss(recipe):
    from experiments.methods import pk_losses

    for name in SYMM_ROWS:
        cfg = recipes.resolve_config(name, recipe)
        pk_losses.loss_class(cfg.method)(**cfg.loss_kwargs)
