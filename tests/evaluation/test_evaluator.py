"""evaluate_embeddings: one kNN + one k-means shared by all metrics, metadata, validation, backends."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from symm_keras import evaluation
from symm_keras.evaluation import (
    STANDARD_RECALL_KS,
    evaluate_embeddings,
    kmeans,
    normalized_mutual_info,
    pair_counting_f1,
    retrieval_metrics,
)
from tests.evaluation.oracles import pair_count_f1, retrieval_oracle

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _data(seed=0, num_classes=8, per_class=5, dim=12, spread=1.0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    x = rng.normal(size=(num_classes, dim))[labels] * 2 + spread * rng.normal(size=(labels.size, dim))
    return x.astype("float32"), labels


def test_standard_recall_ks():
    assert STANDARD_RECALL_KS == {"cub": (1, 2, 4, 8), "cars196": (1, 2, 4, 8), "sop": (1, 10, 100, 1000)}


def test_result_combines_every_metric_with_its_settings():
    x, labels = _data()
    result = evaluate_embeddings(x, labels, recall_ks=(1, 2, 4, 8), kmeans="sklearn", seed=3, knn_backend="keras")
    flat = result.as_dict()
    assert list(flat) == ["recall@1", "recall@2", "recall@4", "recall@8", "r_precision", "map@r", "nmi", "f1"]
    assert all(isinstance(v, float) for v in flat.values())
    assert flat == pytest.approx({**retrieval_oracle(x, labels, (1, 2, 4, 8), "cosine"), "nmi": flat["nmi"], "f1": flat["f1"]})
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    clusters = kmeans(unit, 8, implementation="sklearn", seed=3)
    assert flat["nmi"] == pytest.approx(normalized_mutual_info(labels, clusters.assignments))
    assert flat["f1"] == pytest.approx(pair_count_f1(list(labels), list(clusters.assignments)))
    meta = result.metadata()
    assert meta["kmeans"] == "sklearn" and meta["kmeans_seed"] == 3 and meta["kmeans_inits"] == 1
    assert meta["kmeans_iterations"] == clusters.iterations
    assert meta["num_items"] == 40 and meta["num_classes"] == 8 and meta["singleton_queries"] == 0
    assert meta["knn_backend"] == f"keras-{keras.backend.backend()}" and meta["metric"] == "cosine"
    json.dumps(result.as_dict(metadata=True))  # JSON-ready


def test_auto_backend_is_numpy_on_cpu_and_keras_on_an_accelerator(monkeypatch):
    from symm_keras.neighbors import exact as knn

    x, labels = _data()
    monkeypatch.setattr(knn, "accelerator_present", lambda: False)
    assert evaluate_embeddings(x, labels, clustering=False).knn_backend == "numpy"
    monkeypatch.setattr(knn, "accelerator_present", lambda: True)
    assert evaluate_embeddings(x, labels, clustering=False).knn_backend == f"keras-{keras.backend.backend()}"


def test_without_clustering():
    x, labels = _data()
    result = evaluate_embeddings(x, labels, recall_ks=(1,), clustering=False)
    assert set(result.as_dict()) == {"recall@1", "r_precision", "map@r"}
    assert result.nmi is None and result.metadata()["kmeans"] is None


def test_cosine_ignores_the_scale_of_each_embedding():
    x, labels = _data(spread=2.0)
    scales = np.random.default_rng(1).uniform(0.1, 10.0, size=(len(x), 1)).astype("float32")
    first = evaluate_embeddings(x, labels, kmeans="keras").as_dict()
    second = evaluate_embeddings(x * scales, labels, kmeans="keras").as_dict()
    assert second == pytest.approx(first, abs=1e-6)


def test_euclidean_and_numpy_backend():
    x, labels = _data(spread=2.0)
    result = evaluate_embeddings(x, labels, metric="euclidean", knn_backend="numpy", clustering=False)
    assert result.as_dict() == pytest.approx(retrieval_oracle(x, labels, (1, 2, 4, 8), "euclidean"))
    assert result.knn_backend == "numpy"


def test_singletons_are_reported():
    x, labels = _data()
    labels = labels.copy()
    labels[0] = 100
    with pytest.warns(UserWarning, match="single-item classes"):
        result = evaluate_embeddings(x, labels, clustering=False)
    assert result.singleton_queries == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kmeans": "torch"}, "kmeans must be one of"),
        ({"knn_backend": "cuda"}, "knn_backend must be one of"),
        ({"recall_ks": (1, 40)}, "Recall@40 asks for more neighbours than the gallery holds"),
        ({"metric": "hamming"}, "metric must be one of"),
    ],
)
def test_bad_arguments_fail_before_any_work(kwargs, message, monkeypatch):
    def no_retrieval(*args, **kw):
        raise AssertionError("retrieval ran before the arguments were checked")

    monkeypatch.setattr(evaluation.evaluator, "retrieval_metrics", no_retrieval)
    x, labels = _data()
    with pytest.raises(ValueError, match=message):
        evaluate_embeddings(x, labels, **kwargs)


def test_missing_faiss_is_explained(monkeypatch):
    monkeypatch.setattr(evaluation.evaluator, "faiss_available", lambda: False)
    x, labels = _data()
    with pytest.raises(ValueError, match=r"pip install 'symm_keras\[faiss\]'"):
        evaluate_embeddings(x, labels, kmeans="faiss")


def test_bad_embeddings():
    x, labels = _data()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"embeddings holds NaN or inf in 1 row\(s\): 3"):
        evaluate_embeddings(x, labels)
    with pytest.raises(ValueError, match="labels has 39 entries but there are 40 embeddings"):
        evaluate_embeddings(_data()[0], labels[:-1])


_OTHER_BACKEND_SCRIPT = """
import json, sys
import numpy as np
from symm_keras.evaluation import evaluate_embeddings
data = np.load(sys.argv[1])
result = evaluate_embeddings(data["x"], data["labels"], recall_ks=(1, 2, 4), kmeans="keras", seed=5, knn_backend="keras")
print("RESULT" + json.dumps(result.as_dict()))
"""


def test_tensorflow_and_jax_give_the_same_numbers(tmp_path):
    """The other backend, in a subprocess, reproduces this process's numbers."""
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    x, labels = _data(seed=4, spread=2.5)
    np.savez(tmp_path / "data.npz", x=x, labels=labels)
    script = tmp_path / "other.py"
    script.write_text(_OTHER_BACKEND_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=other, PYTHONPATH=REPO)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "data.npz")], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.split("RESULT", 1)[1])
    ours = evaluate_embeddings(x, labels, recall_ks=(1, 2, 4), kmeans="keras", seed=5, knn_backend="keras").as_dict()
    assert theirs == pytest.approx(ours, abs=1e-12)
    assert 0.0 < ours["recall@1"] < 1.0  # a non-trivial case
