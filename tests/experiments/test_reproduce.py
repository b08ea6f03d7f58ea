"""``make reproduce-*`` (experiments/reproduce.py): clear stops, and download → prepare → train → table."""

import json
import os

import pytest

from data_prep import download, prepare
from data_prep.sources import SOURCES
from experiments import reproduce
from tests.data_prep.http_server import serve
from tests.data_prep.test_download import _cub_archive

TINY_TRAIN = ["--steps=2", "--input_size=64", "--backbone_weights=none", "--eval_every=0", "--tsne_points=0",
              "--nn_queries=0", "--batch_size=8", "--classes_per_batch=4", "--images_per_class=2"]  # fmt: skip


def _stopped(capsys, call):
    with pytest.raises(SystemExit) as stop:
        call()
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_without_a_gpu_it_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "find_gpu", lambda: None)
    err = _stopped(capsys, lambda: reproduce.reproduce("cub", str(tmp_path / "data"), str(tmp_path / "runs")))
    assert "this needs a GPU" in err and "--allow_cpu" in err


def test_missing_dataset_without_internet_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "internet_reachable", lambda host, port, timeout=5.0: False)
    err = _stopped(capsys, lambda: reproduce.reproduce("cub", str(tmp_path / "data"), str(tmp_path / "runs"),
                                                       allow_cpu=True))  # fmt: skip
    assert "cub is not (completely) at" in err and "data.caltech.edu:443 cannot be reached" in err


def test_missing_weights_without_internet_says_so(tmp_path, monkeypatch, capsys):
    archive, remote = _cub_archive(tmp_path)
    monkeypatch.setitem(SOURCES, "cub", (remote,))
    root = str(tmp_path / "data")
    with serve(archive.parent) as server:
        download.download_dataset("cub", root, mirror=server.url, progress=False)
    prepare.prepare("cub", root, progress=False)
    monkeypatch.setattr(reproduce, "internet_reachable", lambda host, port, timeout=5.0: False)
    err = _stopped(capsys, lambda: reproduce.reproduce("cub", root, str(tmp_path / "runs"), allow_cpu=True,
                                                       methods=["npair"], weights_dir=str(tmp_path / "w")))  # fmt: skip
    assert "ImageNet weights of googlenet_caffe are not at" in err and "data_prep.weights" in err


@pytest.mark.slow
def test_download_prepare_train_and_table_from_a_mirror(tmp_path, monkeypatch, capsys):
    """The whole chain on a generated CUB archive served locally; a rerun trains nothing again."""
    archive, remote = _cub_archive(tmp_path)
    monkeypatch.setitem(SOURCES, "cub", (remote,))
    root, logdir = str(tmp_path / "data"), str(tmp_path / "runs")
    with serve(archive.parent) as server:
        table = reproduce.reproduce("cub", root, logdir, methods=["npair", "symm_npair"], allow_cpu=True,
                                    extra_train_flags=TINY_TRAIN, mirror=server.url)  # fmt: skip
        assert [name for name, _ in server.requests] == ["CUB_200_2011.tgz"]
    assert os.path.exists(os.path.join(root, "split_index.csv"))  # prepared
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith(("| npair_cub", "| symm_npair_cub"))]
    assert len(rows) == 2
    for cells in rows:  # "ours / paper" per metric: NMI measured, paper's NMI from Table 1
        ours, paper = cells[1].split(" / ")
        assert 0.0 <= float(ours) <= 100.0 and float(paper) > 0
    with open(os.path.join(logdir, "comparison.md")) as f:
        assert f.read() == table
    monkeypatch.setattr(reproduce.subprocess, "call", lambda *a, **k: pytest.fail("a finished row was retrained"))
    assert reproduce.reproduce("cub", root, logdir, methods=["npair", "symm_npair"], allow_cpu=True,
                               extra_train_flags=TINY_TRAIN) == table  # fmt: skip


def _plan_lines(text):
    return [line for line in text.splitlines() if line.startswith(("npair_", "symm_npair_", "triplet_"))]


def test_plan_is_printed_and_saved_before_the_gpu_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "find_gpu", lambda: None)
    logdir = tmp_path / "runs"
    with pytest.raises(SystemExit):
        reproduce.reproduce("cars196", str(tmp_path / "data"), str(logdir), methods=["npair", "symm_npair"])
    out = capsys.readouterr().out
    lines = _plan_lines(out)
    assert [line.split(" | ")[0] for line in lines] == ["npair_cars196", "symm_npair_cars196"]
    for line in lines:  # official: 10,000 steps, the README's schedule, coupled 5e-3, box crop, an estimate
        cells = line.split(" | ")
        assert cells[1:4] == ["official", "10000", "64 classes x 2"]
        assert cells[4] == "0.0001/5e-05/2.5e-05/1e-05" and cells[5] == "coupled 0.005"
        assert cells[7] == "symm_official +box" and float(cells[-1].split()[0]) > 0
    assert "estimated total" in out and "not a measurement" in out
    plans = json.loads((logdir / "plan.json").read_text())
    assert [p["config"] for p in plans] == ["npair_cars196", "symm_npair_cars196"]


def test_estimate_follows_the_documented_throughput():
    plan = reproduce.resolved_plans("cub", "official", ["npair"])[0]
    evaluations = 10000 // 100 + 1
    expected = 10000 * 128 / reproduce.H100_TRAIN_IMAGES_PER_S
    expected += evaluations * 5924 / reproduce.H100_EMBED_IMAGES_PER_S
    assert reproduce.estimate_gpu_hours(plan) == pytest.approx(expected / 3600)


def test_show_plan_prints_json_and_touches_no_data(tmp_path):
    """The command line: ``--show_plan`` prints the plans as JSON and exits 0 before any data step."""
    import subprocess
    import sys

    absent = tmp_path / "absent"
    done = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--dataset=sop", "--recipe=paper",
                           "--methods=angular", "--show_plan", f"--data_root={absent}", f"--logdir={tmp_path / 'r'}"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    plans = json.loads(done.stdout)
    assert [(p["config"], p["recipe"], p["loss"]["weight"]) for p in plans] == [("angular_sop", "paper", 2.0)]
    assert not absent.exists() and not (tmp_path / "r").exists()


def test_every_run_gets_the_recipe(tmp_path, monkeypatch, capsys):
    """The train command of each row carries --recipe; the rows' results make the table."""
    commands = []

    def fake_train(cmd, env=None):
        commands.append(cmd)
        run_dir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--logdir="))
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump({"metrics": {"recall@1": 0.5}, "paper_results": {"recall@1": 55.9}}, f)
        return 0

    monkeypatch.setattr(reproduce, "find_gpu", lambda: "1 GPU(s) (test)")
    monkeypatch.setattr(reproduce, "prepare_dataset", lambda *a, **k: None)
    monkeypatch.setattr(reproduce, "prepare_weights", lambda *a, **k: None)
    monkeypatch.setattr(reproduce.subprocess, "call", fake_train)
    table = reproduce.reproduce("cub", str(tmp_path / "data"), str(tmp_path / "runs"), methods=["symm_npair"],
                                recipe="paper")  # fmt: skip
    assert len(commands) == 1 and "--recipe=paper" in commands[0] and "--config=symm_npair_cub" in commands[0]
    assert "| symm_npair_cub | " in table and "50.0 / 55.9" in table


def test_an_unknown_recipe_stops_before_anything_starts(tmp_path, capsys):
    err = _stopped(capsys, lambda: reproduce.reproduce("cub", str(tmp_path / "d"), str(tmp_path / "r"), recipe="x"))
    assert "has no recipe 'x'" in err
