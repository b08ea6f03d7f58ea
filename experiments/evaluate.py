r"""Evaluate a training run, saved embeddings or a saved model: Recall@K, R-precision, MAP@R, NMI, F1.

    python -m experiments.evaluate --run runs/x
    python -m experiments.evaluate --embeddings runs/x/test_embeddings.npz --recall_ks 1,10,100,1000
    python -m experiments.evaluate --model runs/x/model.keras --dataset cub \
        --data_root ~/data/CUB_200_2011 --output_json runs/x/eval.json

``--run LOGDIR`` re-evaluates a ``experiments.train`` run: its
``model.keras`` on its test split, read with the preprocessing, input size,
batch size, Recall@K cut-offs and k-means seed recorded in ``LOGDIR/run.json``
(``--data_root`` overrides the recorded dataset directory) and its distance,
so the metrics are those of the run's ``results.json``. ``--embeddings`` reads a ``.npz`` holding ``embeddings`` (n, d) and
``labels`` (n,). ``--model`` loads a ``.keras`` model and embeds a split of a
dataset read with ``symm_keras.data`` (test transform: resize, centre crop).
The Recall@K cut-offs default to the dataset's standard ones
(``STANDARD_RECALL_KS``; CUB/Cars 1,2,4,8, SOP 1,10,100,1000). The metrics
are printed as a table and, with ``--output_json``, written together with the
evaluation settings (k-means implementation, seed, iterations, …).
"""

import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
DATASETS = ("cub", "cars196", "sop")


def define_flags():
    """Define the flags (only when this module is the program)."""
    flags.DEFINE_string("run", None, "A train.py run directory: re-evaluate its model.keras as the run did.")
    flags.DEFINE_string("embeddings", None, ".npz file with arrays 'embeddings' (n, d) and 'labels' (n,).")
    flags.DEFINE_string("model", None, "Saved .keras model that maps images to embeddings.")
    flags.DEFINE_enum("dataset", None, DATASETS, "Dataset to embed with --model (sets the default --recall_ks).")
    flags.DEFINE_string("data_root", None, "Dataset folder in its official layout (see docs/data.md).")
    flags.DEFINE_enum("split", "test", ("train", "test"), "Split to embed with --model.")
    flags.DEFINE_integer("input_size", 227, "Centre-crop size fed to the model.")
    flags.DEFINE_integer("resize", 256, "Side the images are resized to before the crop.")
    flags.DEFINE_enum("preprocessing", "caffe", ("caffe", "inception", "tf", "torch", "none"), "Pixel normalisation.")
    flags.DEFINE_integer("batch_size", 128, "Batch size for embedding images.")
    flags.DEFINE_string("save_embeddings", None, "With --model: also write the embeddings to this .npz.")
    flags.DEFINE_list("recall_ks", None, "Recall@K cut-offs, e.g. 1,2,4,8 (default: the dataset's standard ones).")
    flags.DEFINE_enum("metric", "cosine", ("cosine", "euclidean"), "Retrieval distance.")
    flags.DEFINE_bool("clustering", True, "Compute NMI and F1 (k-means with k = number of classes).")
    flags.DEFINE_enum("kmeans", "sklearn", ("sklearn", "faiss", "keras"), "k-means implementation.")
    flags.DEFINE_integer("seed", 0, "k-means seed.")
    flags.DEFINE_integer("n_init", 1, "k-means initialisations (the lowest inertia is kept).")
    flags.DEFINE_integer("max_iter", None, "k-means iteration cap (default: the implementation's).")
    flags.DEFINE_enum(
        "knn_backend", "auto", ("auto", "keras", "numpy"), "Where the blocked kNN runs (auto: keras on GPU/TPU, else numpy)."
    )
    flags.DEFINE_integer("block_size", None, "Queries per kNN block (default keeps a block near 128 MiB).")
    flags.DEFINE_string("output_json", None, "Write metrics and settings to this JSON file.")


def load_npz(path):
    """``(embeddings, labels)`` from a ``.npz``; clear errors for a missing file or key."""
    import numpy as np

    if not os.path.isfile(path):
        raise ValueError(f"--embeddings: no such file {path!r}.")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"--embeddings: {path!r} is not a readable .npz file ({error}).") from error
    with archive:
        missing = [key for key in ("embeddings", "labels") if key not in archive.files]
        if missing:
            raise ValueError(f"--embeddings: {path!r} lacks array(s) {missing}; it holds {archive.files}.")
        return archive["embeddings"], archive["labels"]


def load_model(path):
    """A saved ``.keras`` model, with the package's custom objects registered."""
    import importlib

    import keras

    for package in ("symm_keras.layers", "symm_keras.losses", "symm_keras.models"):
        importlib.import_module(package)  # registers the package's serialisable classes
    if not os.path.isfile(path):
        raise ValueError(f"--model: no such file {path!r}.")
    return keras.saving.load_model(path, compile=False)


def image_dataset(dataset, data_root, split, input_size, resize, preprocessing, batch_size):
    """tf.data of ``(images, labels)`` for one split, through ``symm_keras.data``."""
    from symm_keras import data

    index = data.load_split_index(dataset, data_root)
    rows = index.test() if split == "test" else index.train()
    prep = data.ImagePreprocessing(crop_size=input_size, resize=resize, mode=preprocessing, random_flip=False)
    return data.eval_dataset(rows, prep, batch_size=batch_size)


def embed_dataset(model, dataset):
    """Embeddings and labels of every batch of ``dataset``."""
    import keras
    import numpy as np

    embeddings, labels = [], []
    for images, batch_labels in dataset.as_numpy_iterator():
        outputs = model.predict_on_batch(images)
        if isinstance(outputs, (list, tuple, dict)):
            raise ValueError("--model must have a single embedding output.")
        embeddings.append(np.asarray(keras.ops.convert_to_numpy(outputs), dtype="float32"))
        labels.append(np.asarray(batch_labels).reshape(-1))
    if not embeddings:
        raise ValueError("the selected split holds no images.")
    return np.concatenate(embeddings), np.concatenate(labels)


def parse_recall_ks(values, dataset):
    if not values:
        from symm_keras.evaluation import STANDARD_RECALL_KS

        return STANDARD_RECALL_KS.get(dataset, (1, 2, 4, 8))
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ValueError(f"--recall_ks must be integers separated by commas, got {','.join(values)!r}.") from None


def format_table(metrics):
    """Two-column text table of the metrics, percentages as in the papers."""
    width = max(len(name) for name in metrics)
    lines = [f"{'metric'.ljust(width)}  value (%)", f"{'-' * width}  ---------"]
    lines += [f"{name.ljust(width)}  {100 * value:9.2f}" for name, value in metrics.items()]
    return "\n".join(lines)


def run_embeddings(run_dir, data_root=None):
    """``(embeddings, labels, settings)`` of a train.py run's ``model.keras`` on its test split, embedded as the
    run embedded it (``run.json``); ``settings`` hold the run's ``recall_ks`` and k-means ``seed``."""
    record_file = os.path.join(run_dir, "run.json")
    if not os.path.isfile(record_file):
        raise ValueError(f"--run: {run_dir!r} holds no run.json (not a train.py run directory).")
    with open(record_file) as handle:
        record = json.load(handle)
    model = load_model(os.path.join(run_dir, "model.keras"))
    test = record["test_source"]
    if test["kind"] == "images":
        from symm_keras import data

        from experiments.configs import ExperimentConfig, recipes
        from experiments.sources import ImageSource

        root = data_root or test["root"]
        if root is None:
            raise ValueError(f"--run: {run_dir!r} does not record its dataset directory; give --data_root.")
        index = data.load_split_index(test["dataset"], root)
        prep = recipes.build_preprocessing(ExperimentConfig(**record["config"]), test["preprocessing"])
        source = ImageSource(index.test(), prep, "test")
    elif test["name"] == "digits-test":
        from experiments.digits import digits_sources

        source = digits_sources()[1]
    else:
        raise ValueError(
            f"--run: the run's test split was in-memory arrays ({test['name']!r}) that cannot be rebuilt; "
            f"evaluate {os.path.join(run_dir, 'test_embeddings.npz')} with --embeddings."
        )
    from experiments.reporting import embed

    embeddings, labels = embed(model, source, record["eval_batch_size"])
    return embeddings, labels, {"recall_ks": record["recall_ks"], "seed": record["seed"],
                                "metric": record["eval_metric"]}  # fmt: skip


def run(
    embeddings_path=None,
    model_path=None,
    dataset=None,
    data_root=None,
    split="test",
    input_size=227,
    resize=256,
    preprocessing="caffe",
    batch_size=128,
    save_embeddings=None,
    recall_ks=None,
    output_json=None,
    run_dir=None,
    **evaluate_kwargs,
):
    """Evaluate, print the table, write the JSON; returns the JSON-ready dict."""
    import numpy as np

    if sum(x is not None for x in (embeddings_path, model_path, run_dir)) != 1:
        raise ValueError("give exactly one of --run, --embeddings and --model.")
    if run_dir is not None:
        embeddings, labels, settings = run_embeddings(run_dir, data_root)
        recall_ks = recall_ks or [str(k) for k in settings["recall_ks"]]
        evaluate_kwargs.setdefault("seed", settings["seed"])
        evaluate_kwargs.setdefault("metric", settings["metric"])
        if save_embeddings:
            np.savez(save_embeddings, embeddings=embeddings, labels=labels)
        source = {"run": run_dir}
    elif model_path is not None:
        if dataset is None or data_root is None:
            raise ValueError("--model needs --dataset and --data_root (the images to embed).")
        model = load_model(model_path)
        images = image_dataset(dataset, data_root, split, input_size, resize, preprocessing, batch_size)
        embeddings, labels = embed_dataset(model, images)
        if save_embeddings:
            np.savez(save_embeddings, embeddings=embeddings, labels=labels)
        source = {"model": model_path, "dataset": dataset, "split": split, "data_root": data_root}
    else:
        embeddings, labels = load_npz(embeddings_path)
        source = {"embeddings": embeddings_path, "dataset": dataset}
    ks = parse_recall_ks(recall_ks, dataset)
    from symm_keras.evaluation import evaluate_embeddings

    result = evaluate_embeddings(embeddings, labels, recall_ks=ks, **evaluate_kwargs)
    metrics = result.as_dict()
    print(format_table(metrics))
    report = {"metrics": metrics, "settings": {**result.metadata(), "recall_ks": list(ks)}, "source": source}
    if output_json:
        directory = os.path.dirname(os.path.abspath(output_json))
        os.makedirs(directory, exist_ok=True)
        with open(output_json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {output_json}")
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        run(
            run_dir=FLAGS.run,
            embeddings_path=FLAGS.embeddings,
            model_path=FLAGS.model,
            dataset=FLAGS.dataset,
            data_root=FLAGS.data_root,
            split=FLAGS.split,
            input_size=FLAGS.input_size,
            resize=FLAGS.resize,
            preprocessing=FLAGS.preprocessing,
            batch_size=FLAGS.batch_size,
            save_embeddings=FLAGS.save_embeddings,
            recall_ks=FLAGS.recall_ks,
            output_json=FLAGS.output_json,
            **({"metric": FLAGS.metric} if FLAGS["metric"].present or not FLAGS.run else {}),
            clustering=FLAGS.clustering,
            kmeans=FLAGS.kmeans,
            **({"seed": FLAGS.seed} if FLAGS["seed"].present or not FLAGS.run else {}),
            n_init=FLAGS.n_init,
            max_iter=FLAGS.max_iter,
            knn_backend=FLAGS.knn_backend,
            block_size=FLAGS.block_size,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
