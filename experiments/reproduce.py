r"""``make reproduce-cub|cars196|sop``: the Symm table for one dataset, end to end.

download → prepare → train every implemented Symm row of the dataset's table
(Table 1 CUB, 2 Cars196, 3 SOP) and its baseline → evaluate → one comparison
table of our numbers next to the paper's::

    python -m experiments.reproduce --dataset cub [--data_root data/cub] [--logdir runs/reproduce/cub]

Each row is one ``python -m experiments.train --config <row>`` run in its own
run directory, so an interrupted reproduction restarted with the same command
resumes the unfinished row from its last checkpoint and skips finished rows.
It needs a GPU (ten GoogLeNet trainings) and, unless the dataset and the
ImageNet GoogLeNet weights are already on disk, internet; it says so and
stops when either is missing. The dataset is downloaded
(``data_prep.download``) and prepared (``data_prep.prepare``: every image
decode-checked, corrupt ones listed and left out) into ``--data_root``; the
BVLC GoogLeNet weights (``data_prep.weights``) into ``--weights_dir``, which
the training runs get as ``SYMM_KERAS_WEIGHTS``. ``--mirror`` /
``--weights_mirror`` name a base URL tried before the official hosts.
"""

import json
import os
import socket
import subprocess
import sys

from absl import app, flags

from experiments.configs import STANDARD_RECALL_KS

DOWNLOAD_HOSTS = {
    "cub": ("data.caltech.edu", 443),
    "cars196": ("github.com", 443),
    "sop": ("ftp.cs.stanford.edu", 443),
}

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("dataset", None, ("cub", "cars196", "sop"), "Dataset whose Symm table to reproduce.")
    flags.DEFINE_string("data_root", None, "Dataset directory (default data/<dataset>); downloaded if missing.")
    flags.DEFINE_string("logdir", None, "Where the runs go (default runs/reproduce/<dataset>).")
    flags.DEFINE_list("methods", None, "Subset of the rows' methods (default: every implemented Symm row + baseline).")
    flags.DEFINE_bool("allow_cpu", False, "Run even without a GPU (days on a CPU; for checking the plumbing).")
    flags.DEFINE_string("extra_train_flags", "", "Extra flags passed to every experiments.train run.")
    flags.DEFINE_string("mirror", None, "Base URL tried first for the dataset archives (mirror/<file name>).")
    flags.DEFINE_string("weights_dir", None, "Where the ImageNet weights are (default $SYMM_KERAS_WEIGHTS "
                        "or ~/.keras/symm_keras); downloaded there if missing.")
    flags.DEFINE_string("weights_mirror", None, "Base URL tried first for the weights.")
    flags.mark_flag_as_required("dataset")


def find_gpu():
    """A description of the accelerator the Keras backend will use, or None."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"{len(gpus)} GPU(s) via TensorFlow" if gpus else None
    if backend == "jax":
        import jax

        devices = [d for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
        return f"{len(devices)} GPU(s) via JAX ({devices[0].device_kind})" if devices else None
    return None


def internet_reachable(host, port, timeout=5.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def dataset_ready(dataset, root):
    """True when ``root`` holds the complete dataset (all listed images present)."""
    from symm_keras import data

    try:
        index = data.load_split_index(dataset, root)
        index.check_files()
    except (OSError, ValueError):
        return False
    return True


def rows_for(dataset, methods=None):
    """Config names of the dataset's Symm rows and their baselines, in table order."""
    from experiments.configs import symm

    names = []
    for base, with_symm in symm.SYMM_METHOD_PAIRS:
        for method in (base, with_symm):
            if methods is None or method in methods:
                names.append(symm.symm_config_name(method, dataset))
    return names


def comparison_table(dataset, results):
    """One markdown table: per row, ours and the paper's value per metric (%)."""
    keys = ["nmi", "f1"] + [f"recall@{k}" for k in STANDARD_RECALL_KS[dataset]] + ["map@r"]
    head = "| row | " + " | ".join(keys) + " |"
    lines = [
        f"Symm {dataset}: ours / paper (%). Paper numbers from its Table "
        f"{ {'cub': 1, 'cars196': 2, 'sop': 3}[dataset] }; MAP@R is not reported there.",
        "",
        head,
        "| --- |" + " ---: |" * len(keys),
    ]
    for row, res in results:
        cells = []
        for key in keys:
            ours = res.get("metrics", {}).get(key) if res else None
            theirs = res.get("paper_results", {}).get(key) if res else None
            ours_s = f"{100 * ours:.1f}" if ours is not None else "—"
            cells.append(f"{ours_s} / {theirs if theirs is not None else '—'}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fail(message):
    print(f"reproduce: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _host_of(url):
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _need_internet(what, host, port, hint):
    if not internet_reachable(host, port):
        fail(f"{what}, and downloading it needs internet, but {host}:{port} cannot be reached. {hint}")


def prepare_dataset(dataset, root, mirror=None):
    """Download (``data_prep.download``) and prepare (``data_prep.prepare``) unless complete at ``root``."""
    if dataset_ready(dataset, root):
        print(f"dataset {dataset}: found complete at {root}", flush=True)
        return
    from data_prep import download, prepare

    host, port = _host_of(mirror) if mirror else DOWNLOAD_HOSTS[dataset]
    _need_internet(f"{dataset} is not (completely) at {root}", host, port,
                   "Copy an extracted dataset there (official layout, see docs/data.md) or run on a machine "
                   "with internet.")  # fmt: skip
    print(f"+ data_prep.download --dataset {dataset} --root {root}" + (f" --mirror {mirror}" if mirror else ""),
          flush=True)  # fmt: skip
    try:
        download.download_dataset(dataset, root, mirror=mirror)
        print(f"+ data_prep.prepare --dataset {dataset} --root {root}", flush=True)
        summary = prepare.prepare(dataset, root)
    except (OSError, ValueError) as err:
        fail(f"preparing {dataset} at {root} failed: {err}")
    if summary["corrupt_skipped"]:
        print(f"left out {len(summary['corrupt_skipped'])} corrupt images (listed in {root}/corrupt_images.txt)")
    if not dataset_ready(dataset, root):
        fail(f"after download/prepare, {root} still does not hold the complete {dataset} dataset")


def imagenet_weights_needed(rows, extra_train_flags):
    """Backbones of ``rows`` that load ImageNet weights (none when the extra flags override them)."""
    from experiments import configs

    if any(flag.startswith("--backbone_weights") for flag in extra_train_flags):
        return []
    row_configs = [configs.get_config(row) for row in rows]
    return sorted({cfg.backbone for cfg in row_configs if cfg.backbone_weights == "imagenet"})


def prepare_weights(backbones, weights_dir, mirror=None):
    """Fetch the ImageNet weights of ``backbones`` into ``weights_dir`` unless there (``data_prep.weights``)."""
    from data_prep import weights

    for backbone in backbones:
        if backbone not in weights.CHECKPOINTS:
            continue  # keras.applications backbones fetch their own weights
        path = os.path.join(weights_dir, weights.CHECKPOINTS[backbone])
        if any(os.path.exists(path + suffix) for suffix in ("", ".index")):
            print(f"weights {backbone}: found at {path}", flush=True)
            continue
        url = mirror or weights.WEIGHTS[backbone].urls[0]
        _need_internet(f"the ImageNet weights of {backbone} are not at {path}", *_host_of(url),
                       f"Put them there (python -m data_prep.weights --model {backbone} --dest {weights_dir} "
                       "on a machine with internet) or pass --weights_dir.")  # fmt: skip
        print(f"+ data_prep.weights --model {backbone} --dest {weights_dir}", flush=True)
        try:
            weights.fetch_weights(backbone, weights_dir, mirror=mirror)
        except (OSError, ValueError) as err:
            fail(f"fetching the {backbone} weights failed: {err}")


def reproduce(dataset, root, logdir, methods=None, allow_cpu=False, extra_train_flags=(), mirror=None,
              weights_dir=None, weights_mirror=None):  # fmt: skip
    """Download → prepare → train each row (resumable) → ``<logdir>/comparison.md``; returns the table."""
    from symm_keras.models.registry import WEIGHTS_ENV, weights_dir as default_weights_dir

    gpu = find_gpu()
    if gpu is None and not allow_cpu:
        fail(
            "this needs a GPU: no GPU is visible to the Keras backend (KERAS_BACKEND="
            f"{os.environ.get('KERAS_BACKEND', 'tensorflow')}). Ten GoogLeNet trainings on a CPU take days. "
            "Run it on a GPU machine (docs/training.md, 'GPU'), or pass --allow_cpu to run anyway."
        )
    print(f"accelerator: {gpu or 'CPU only (--allow_cpu)'}", flush=True)
    rows = rows_for(dataset, methods)
    if not rows:
        fail(f"--methods {','.join(methods or [])} selects no Symm row")
    extra_train_flags = list(extra_train_flags)
    weights_dir = os.path.abspath(weights_dir or default_weights_dir())
    prepare_dataset(dataset, root, mirror)
    prepare_weights(imagenet_weights_needed(rows, extra_train_flags), weights_dir, weights_mirror)
    env = dict(os.environ, **{WEIGHTS_ENV: weights_dir})
    results = []
    for row in rows:
        run_dir = os.path.join(logdir, row)
        result_file = os.path.join(run_dir, "results.json")
        if not os.path.exists(result_file):
            cmd = [sys.executable, "-m", "experiments.train", f"--config={row}", f"--data_root={root}",
                   f"--logdir={run_dir}"] + extra_train_flags  # fmt: skip
            print("+", " ".join(cmd), flush=True)
            if subprocess.call(cmd, env=env) != 0:
                fail(f"training {row} failed; rerun the same command to resume it from its last checkpoint")
        with open(result_file) as f:
            results.append((row, json.load(f)))
    table = comparison_table(dataset, results)
    os.makedirs(logdir, exist_ok=True)
    with open(os.path.join(logdir, "comparison.md"), "w") as f:
        f.write(table)
    print(table)
    return table


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    reproduce(
        FLAGS.dataset,
        FLAGS.data_root or os.path.join("data", FLAGS.dataset),
        FLAGS.logdir or os.path.join("runs", "reproduce", FLAGS.dataset),
        methods=FLAGS.methods,
        allow_cpu=FLAGS.allow_cpu,
        extra_train_flags=FLAGS.extra_train_flags.split(),
        mirror=FLAGS.mirror,
        weights_dir=FLAGS.weights_dir,
        weights_mirror=FLAGS.weights_mirror,
    )
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
