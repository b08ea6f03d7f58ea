"""experiments/evaluate.py: .npz and saved-model inputs, table + JSON, clear errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import evaluate
from symm_keras.evaluation import evaluate_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _npz(tmp_path, rng):
    labels = np.repeat(np.arange(5), 4)
    embeddings = rng.normal(size=(5, 6))[labels] + 0.3 * rng.normal(size=(20, 6))
    path = tmp_path / "emb.npz"
    np.savez(path, embeddings=embeddings, labels=labels)
    return path, embeddings, labels


def test_npz_table_and_json(tmp_path, rng, capsys):
    path, embeddings, labels = _npz(tmp_path, rng)
    out = tmp_path / "out" / "eval.json"
    report = evaluate.run(embeddings_path=str(path), recall_ks=["1", "4"], output_json=str(out), kmeans="keras")
    expected = evaluate_embeddings(embeddings, labels, recall_ks=(1, 4), kmeans="keras").as_dict()
    assert report["metrics"] == pytest.approx(expected)
    saved = json.loads(out.read_text())
    assert saved["metrics"] == pytest.approx(expected)
    assert saved["settings"]["kmeans"] == "keras" and saved["settings"]["recall_ks"] == [1, 4]
    assert saved["settings"]["kmeans_seed"] == 0 and saved["settings"]["kmeans_iterations"] >= 1
    table = capsys.readouterr().out
    assert "recall@4" in table and "map@r" in table and "nmi" in table


def test_standard_recall_ks_follow_the_dataset(tmp_path, rng):
    path, _, _ = _npz(tmp_path, rng)
    with pytest.raises(ValueError, match="Recall@1000 asks for more neighbours"):
        evaluate.run(embeddings_path=str(path), dataset="sop", clustering=False)
    report = evaluate.run(embeddings_path=str(path), dataset="cub", clustering=False)
    assert list(report["metrics"])[:4] == ["recall@1", "recall@2", "recall@4", "recall@8"]


def test_bad_inputs(tmp_path, rng):
    path, _, _ = _npz(tmp_path, rng)
    with pytest.raises(ValueError, match="exactly one of --run, --embeddings and --model"):
        evaluate.run()
    with pytest.raises(ValueError, match="no such file"):
        evaluate.run(embeddings_path=str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "wrong.npz", features=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['embeddings', 'labels'\]"):
        evaluate.run(embeddings_path=str(tmp_path / "wrong.npz"))
    with pytest.raises(ValueError, match="--recall_ks must be integers"):
        evaluate.run(embeddings_path=str(path), recall_ks=["1", "x"])
    with pytest.raises(ValueError, match="--model needs --dataset and --data_root"):
        evaluate.run(model_path=str(path))


def test_saved_model_on_a_dataset_in_the_official_layout(tmp_path):
    import keras

    from tests.data.fixtures import make_cub

    fake = make_cub(str(tmp_path / "data"), images_per_class=3)
    inputs = keras.Input((24, 24, 3))
    features = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(features))
    model_path = str(tmp_path / "model.keras")
    model.save(model_path)
    saved = tmp_path / "emb.npz"
    report = evaluate.run(
        model_path=model_path,
        dataset="cub",
        data_root=fake.root,
        input_size=24,
        resize=28,
        preprocessing="tf",
        batch_size=5,
        save_embeddings=str(saved),
        recall_ks=["1", "2"],
    )
    with np.load(saved) as archive:
        assert archive["embeddings"].shape == (12, 4)  # 4 test classes × 3 images
        assert sorted(set(archive["labels"].tolist())) == [101, 102, 103, 104]
        expected = evaluate_embeddings(archive["embeddings"], archive["labels"], recall_ks=(1, 2))
    assert report["metrics"] == pytest.approx(expected.as_dict())
    assert report["source"]["dataset"] == "cub"


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_command_line_errors(tmp_path):
    unknown = _cli("--embedings=x.npz")
    assert unknown.returncode != 0 and "Unknown command line flag 'embedings'" in unknown.stderr
    missing = _cli(f"--embeddings={tmp_path / 'nope.npz'}")
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.slow
def test_command_line_run(tmp_path, rng):
    path, _, _ = _npz(tmp_path, rng)
    out = tmp_path / "cli.json"
    done = _cli(f"--embeddings={path}", "--recall_ks=1,2", "--noclustering", f"--output_json={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(json.loads(out.read_text())["metrics"]) == {"recall@1", "recall@2", "r_precision", "map@r"}
