"""``make reproduce-*`` (experiments/reproduce.py): clear stops, and download → prepare → train → table."""

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
