"""Flag resolution of experiments/train.py: overrides, inconsistencies, CLI errors."""

import pytest

from experiments import train
from experiments.train import UsageError, resolve_config
from tests.experiments.helpers import run_script


def test_config_row_with_overrides():
    cfg = resolve_config({"config": "symm_npair_cub", "steps": 50, "lr": 3e-4, "batch_size": 64})
    assert (cfg.method, cfg.dataset, cfg.steps, cfg.epochs, cfg.lr) == ("symm_npair", "cub", 50, None, 3e-4)
    assert (cfg.classes_per_batch, cfg.images_per_class) == (32, 2)
    assert cfg.paper_results["recall@1"] == 55.9  # the row's published numbers stay attached


def test_method_and_dataset_pick_the_paper_row():
    cfg = resolve_config({"method": "angular", "dataset": "cars196"})
    assert cfg.name == "angular_cars196" and cfg.table == "Table 2"
    assert resolve_config({"method": "contrastive", "dataset": "cub"}).name == "contrastive_cub"


def test_epochs_replace_steps_and_json_kwargs_merge():
    cfg = resolve_config({"config": "symm_npair_sop", "epochs": 3, "loss_kwargs": '{"pairs": "paper"}'})
    assert cfg.epochs == 3 and cfg.steps is None and cfg.loss_kwargs == {"pairs": "paper"}


@pytest.mark.parametrize(
    "values,message",
    [
        ({"config": "symm_npair_cub", "method": "npair"}, "contradicts --config"),
        ({"config": "symm_npair_cub", "dataset": "sop"}, "contradicts --config"),
        ({"config": "no_such_row"}, "unknown --config"),
        ({"method": "npair"}, "both --method and --dataset"),
        ({"config": "npair_cub", "steps": 10, "epochs": 2}, "not both"),
        ({"config": "npair_cub", "batch_size": 100, "classes_per_batch": 64}, "batch_size 100"),
        ({"config": "npair_cub", "batch_size": 99}, "not a multiple"),
        ({"config": "symm_npair_cub", "images_per_class": 4}, "P×2 layout"),
        ({"config": "npair_cub", "lr": -1.0}, "--lr must be a finite number > 0"),
        ({"config": "npair_cub", "steps": 0}, "--steps must be >= 1"),
        ({"config": "npair_cub", "classes_per_batch": 1}, "classes_per_batch must be >= 2"),
        ({"config": "npair_cub", "loss_kwargs": "{bad json"}, "not valid JSON"),
        ({"config": "npair_cub", "loss_kwargs": "[1, 2]"}, "JSON object"),
        ({"config": "npair_cub", "backbone": "mlp"}, "--backbone mlp is for --dataset digits"),
        ({"method": "npair", "dataset": "digits", "backbone": "resnet50"}, "trains the 'mlp' backbone"),
    ],
)
def test_inconsistent_flags_are_clear_errors(values, message):
    with pytest.raises(UsageError, match=message):
        resolve_config(values)


def test_image_dataset_needs_an_existing_data_root(tmp_path):
    cfg = resolve_config({"config": "npair_cub"})
    with pytest.raises(UsageError, match="needs --data_root"):
        train.image_sources(cfg, None)
    with pytest.raises(UsageError, match="is not a directory"):
        train.image_sources(cfg, str(tmp_path / "missing"))


def test_command_line_errors():
    code = (
        "import subprocess, sys\n"
        "def run(*a):\n"
        "    p = subprocess.run([sys.executable, '-m', 'experiments.train', *a], capture_output=True, text=True)\n"
        "    print('RC', p.returncode); print(p.stderr[-600:])\n"
        "run('--method', 'npair', '--dataset', 'digits', '--logdir', '/tmp/x', '--no_such_flag', '3')\n"
        "run('--method', 'npair', '--dataset', 'digits', '--steps', '5', '--epochs', '2', '--logdir', '/tmp/x')\n"
        "run('--method', 'npair', '--dataset', 'digits')\n"
        "run('--method', 'npairs', '--dataset', 'digits', '--logdir', '/tmp/x')\n"
    )
    out = run_script(code).stdout
    chunks = out.split("RC ")[1:]
    assert len(chunks) == 4, out
    assert all(not c.startswith("0") for c in chunks), out
    assert "Unknown command line flag 'no_such_flag'" in chunks[0]
    assert "train.py: error: give --steps or --epochs, not both" in chunks[1]
    assert "train.py: error: --logdir is required" in chunks[2]
    assert "train.py: error: unknown --method 'npairs'; available: " in chunks[3]
