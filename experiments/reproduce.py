r"""``make reproduce-cub|cars196|sop``: the Symm table for one dataset, end to end.

download → prepare → train every implemented Symm row of the dataset's table
(Table 1 CUB, 2 Cars196, 3 SOP) and its baseline → evaluate → one comparison
table of our numbers next to the paper's::

    python -m experiments.reproduce --dataset cub [--recipe official|paper] [--data_root data/cub]
        [--logdir runs/reproduce/cub] [--show_plan]

Before anything else it prints the plan: per row the recipe's steps, batch,
learning rates, weight decay, head multiplier, preprocessing, evaluation
and reported result, with an *estimated* GPU time (:func:`estimate_gpu_hours`,
from documented throughput figures, not a measurement); the full resolved
plans (``experiments.configs.recipes.resolve_recipe``) go to
``<logdir>/plan.json``; ``--show_plan`` prints them as JSON and exits without
touching data. ``--recipe`` (default ``official``, the released code's
training) is passed to every run.

Each row is one ``python -m experiments.train --config <row> --recipe <recipe>``
run in its own run directory, so an interrupted reproduction restarted with the same command
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

from experiments.configs import STANDARD_RECALL_KS, recipes

# Documented throughput figures behind the time estimate (docs/gpu.md, one H100, Keras on JAX, float32):
# the GoogLeNet 227 px Symm+N-pair train step at batch 128, and the CUB test-set embedding pass (5,864 images
# in 0.39 s). The Symm paper's own figure (Training Speed and Memory): 0.8866 s per Symm+N-pair batch of 128
# on a Tesla P40.
H100_TRAIN_IMAGES_PER_S = 3989.0
H100_EMBED_IMAGES_PER_S = 5864 / 0.39
P40_SECONDS_PER_BATCH_128 = 0.8866

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
    flags.DEFINE_string("recipe", "official", "Recipe of every row: official (the released code) or paper.")
    flags.DEFINE_bool("show_plan", False, "Print every row's resolved plan as JSON and exit (touches no data).")
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


def estimate_gpu_hours(plan):
    """Estimated H100 hours of one resolved plan: training images / 3,989 img/s plus every evaluation's
    embedding pass (step 0 included) / 15,036 img/s; k-means, kNN and input-pipeline stalls not included."""
    steps, batch = plan["steps"], plan["batch"]["batch_size"]
    every = plan["evaluation"]["eval_every"] or steps
    evaluations = steps // every + 1 + (steps % every != 0)
    seconds = steps * batch / H100_TRAIN_IMAGES_PER_S
    seconds += evaluations * recipes.TEST_IMAGES[plan["dataset"]] / H100_EMBED_IMAGES_PER_S
    return seconds / 3600


def plan_summary(plans):
    """The printed plan: one line per row with its estimated GPU time, and the total."""
    lines = ["row | recipe | steps | batch | lr at 0/5k/10k/15k | weight decay | head | preprocessing | eval | "
             "reported | est. H100 h (P40 h, paper's step time)"]  # fmt: skip
    total = 0.0
    for plan in plans:
        lr = plan["lr_at_step"]
        hours = estimate_gpu_hours(plan)
        total += hours
        p40 = plan["steps"] * P40_SECONDS_PER_BATCH_128 * plan["batch"]["batch_size"] / 128 / 3600
        head = plan["head_multiplier"]
        lines.append(
            f"{plan['config']} | {plan['recipe']} | {plan['steps']} | {plan['batch']['layout']} | "
            f"{lr['0']:.2g}/{lr['5000']:.2g}/{lr['10000']:.2g}/{lr['15000']:.2g} | "
            f"{plan['weight_decay']['form']} {plan['weight_decay']['value']:g} | "
            f"{head['value']:g}x {head['kind']} (effective {head['effective']:g}x) | "
            f"{plan['preprocessing']['pipeline']}{' +box' if plan['preprocessing']['bbox_crop'] else ''} | "
            f"{plan['evaluation']['distance']} every {plan['evaluation']['eval_every']} | "
            f"{plan['reported_result']['primary']} | {hours:.2f} ({p40:.1f})"
        )
    lines.append(f"estimated total: {total:.1f} GPU hours on one H100 (an estimate from docs/gpu.md throughput "
                 "figures, not a measurement; k-means/kNN per evaluation and data-loading stalls not included)")
    return "\n".join(lines) + "\n"


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


def resolved_plans(dataset, recipe, methods=None):
    """The resolved plan (``recipes.resolve_recipe``) of every row ``make reproduce-<dataset>`` trains."""
    return [recipes.resolve_recipe(row, recipe) for row in rows_for(dataset, methods)]


def reproduce(dataset, root, logdir, methods=None, allow_cpu=False, extra_train_flags=(), mirror=None,
              weights_dir=None, weights_mirror=None, recipe="official"):  # fmt: skip
    """Plan → download → prepare → train each row (resumable) → ``<logdir>/comparison.md``; returns the table."""
    from symm_keras.models.registry import WEIGHTS_ENV, weights_dir as default_weights_dir

    try:
        plans = resolved_plans(dataset, recipe, methods)
    except ValueError as err:
        fail(str(err))
    print(f"plan: Symm {dataset}, recipe {recipe} (full plans in {os.path.join(logdir, 'plan.json')})", flush=True)
    print(plan_summary(plans), flush=True)
    os.makedirs(logdir, exist_ok=True)
    with open(os.path.join(logdir, "plan.json"), "w") as f:
        json.dump(plans, f, indent=1)
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
            cmd = [sys.executable, "-m", "experiments.train", f"--config={row}", f"--recipe={recipe}",
                   f"--data_root={root}", f"--logdir={run_dir}"] + extra_train_flags  # fmt: skip
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
    if FLAGS.show_plan:
        try:
            print(json.dumps(resolved_plans(FLAGS.dataset, FLAGS.recipe, FLAGS.methods), indent=1))
        except ValueError as err:
            fail(str(err))
        return 0
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
        recipe=FLAGS.recipe,
    )
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
