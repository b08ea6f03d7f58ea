r"""Train an embedding with one of the suite's methods; resume, evaluate, report.

    python -m experiments.train --config symm_npair_cub --data_root ~/data/CUB_200_2011
    python -m experiments.train --dataset cars196 --data_root DIR --method npair \
        --steps 3000 --logdir runs/npair_cars
    python -m experiments.train --list_configs

``--config NAME`` picks a paper-table row (``experiments/configs``); without
it the method's default row for ``--dataset`` is used. Any flag given on the
command line overrides the row (``experiments/runconfig.py``). Runs are
resumable: the same command with the same ``--logdir`` continues from the
last checkpoint, and a finished run continues when only ``--steps``/``--epochs``
grew. At the end the run writes ``model.keras``, ``test_embeddings.npz``,
``results.json`` and ``results.md`` (our NMI, F1, Recall@K, MAP@R next to the
paper's numbers); ``python -m experiments.evaluate --run LOGDIR`` evaluates
the saved model again. TensorBoard: ``tensorboard --logdir LOGDIR``.

Exit status: 0 done, 1 the final evaluation failed (the run is checkpointed:
rerun to evaluate), 2 a usage error (``train.py: error: …``, before any
work), 3 training diverged, 130 Ctrl-C (a checkpoint was written first).

``--dataset digits`` (scikit-learn's 8×8 digits, classes 0–4 train / 5–9
test, MLP backbone) is the offline dataset of ``make demo`` and the tests.
"""

import importlib
import json
import os
import sys

from absl import app, flags

from experiments.callbacks import TrainingCollapsed, TrainingDiverged, TrainingInterrupted
from experiments.digits import digits_sources, mlp_embedding_model
from experiments.reporting import embed, evaluate
from experiments.runconfig import (
    CONFIG_FIELDS,
    DATASETS,
    UsageError,
    default_config_name,
    method_defaults,
    resolve_config,
)
from experiments.trainer import EvaluationFailed, epoch_segments, run_training

__all__ = [
    "TrainingCollapsed", "TrainingDiverged", "TrainingInterrupted", "EvaluationFailed", "UsageError", "digits_sources",
    "mlp_embedding_model", "embed", "evaluate", "default_config_name", "method_defaults", "resolve_config",
    "epoch_segments", "run_training", "image_sources", "main", "run_main",
]  # fmt: skip

FLAGS = flags.FLAGS
PRECISIONS = ("none", "float16", "bfloat16")


def define_flags(flag_values=FLAGS):
    """Define the command-line flags in ``flag_values`` (only when train.py is the program,
    so importing this module from the demo, reproduce.py or tests defines none)."""
    from experiments.building import OPTIMIZERS

    fv = {"flag_values": flag_values}

    flags.DEFINE_string("config", None, "Experiment config (paper-table row) to run, e.g. symm_npair_cub.", **fv)
    flags.DEFINE_bool("list_configs", False, "Print the registered configs and exit.", **fv)
    flags.DEFINE_string("recipe", None, "Recipe of the row (official, paper, ...; default: the row's own).", **fv)
    flags.DEFINE_bool("show_config", False, "Print the resolved plan of the run as JSON and exit.", **fv)
    flags.DEFINE_bool("check_decode", False, "Decode every image of the dataset before training (stops on a "
                      "corrupt one, naming it).", **fv)  # fmt: skip
    flags.DEFINE_enum("dataset", None, DATASETS, "Dataset (digits = offline demo data).", **fv)
    flags.DEFINE_string("data_root", None, "Dataset directory (official layout; see docs/data.md).", **fv)
    flags.DEFINE_string("method", None, "Training method (experiments.methods registry; see --plugins).", **fv)
    flags.DEFINE_list("plugins", [], "Modules to import first; they may register more methods.", **fv)
    flags.DEFINE_string("backbone", None, "Backbone name (symm_keras.models registry; 'mlp' for digits).", **fv)
    flags.DEFINE_string("backbone_weights", None, "'imagenet', a weights file, or 'none'.", **fv)
    flags.DEFINE_integer("embedding_dim", None, "Embedding size.", **fv)
    flags.DEFINE_bool("l2_normalize", None, "L2-normalise the embeddings in the model.", **fv)
    flags.DEFINE_integer("input_size", None, "Crop size in pixels (227 for GoogLeNet as in the papers).", **fv)
    flags.DEFINE_integer("batch_size", None, "Batch size = classes_per_batch × images_per_class.", **fv)
    flags.DEFINE_integer("classes_per_batch", None, "P of a P×K batch.", **fv)
    flags.DEFINE_integer("images_per_class", None, "K of a P×K batch (2 in the Symm paper).", **fv)
    flags.DEFINE_integer("steps", None, "Training steps (exclusive with --epochs).", **fv)
    flags.DEFINE_integer("epochs", None, "Training epochs (exclusive with --steps).", **fv)
    flags.DEFINE_enum("optimizer", None, list(OPTIMIZERS), "Optimizer.", **fv)
    flags.DEFINE_float("lr", None, "Base learning rate.", **fv)
    flags.DEFINE_float("momentum", None, "SGD momentum.", **fv)
    flags.DEFINE_float("weight_decay", None, "Weight decay (SGD/AdamW).", **fv)
    flags.DEFINE_float("head_lr_multiplier", None, "Learning-rate multiplier of the embedding head.", **fv)
    flags.DEFINE_bool("freeze_batchnorm", None, "Run the backbone's batch-norm layers in inference mode "
                      "(small batches).", **fv)  # fmt: skip
    flags.DEFINE_bool("freeze_backbone", None, "Keep the whole backbone fixed (weights and batch norm); train "
                      "only the embedding head (docs/training.md).", **fv)  # fmt: skip
    flags.DEFINE_string("loss_kwargs", None, 'JSON dict of loss arguments, e.g. \'{"pairs": "paper"}\'.', **fv)
    flags.DEFINE_string("method_kwargs", None, "JSON dict of method arguments.", **fv)
    flags.DEFINE_string("logdir", None, "Run directory (checkpoints, TensorBoard, results). Required.", **fv)
    flags.DEFINE_integer("seed", 0, "Run seed (weights init, batch sampling).", **fv)
    flags.DEFINE_integer("eval_every", None, "Evaluate on the test split every N steps (0: only at the end).", **fv)
    flags.DEFINE_integer("checkpoint_every", None, "Checkpoint every N steps (and always at the end).", **fv)
    flags.DEFINE_integer("log_every", 10, "Write training scalars (and check for divergence) every N steps.", **fv)
    flags.DEFINE_enum("strategy", "default", ("default", "mirrored"), "Multi-device strategy.", **fv)
    flags.DEFINE_enum("mixed_precision", "none", PRECISIONS, "Mixed-precision compute dtype.", **fv)
    flags.DEFINE_integer("eval_batch_size", 256, "Batch size for embedding the test split.", **fv)
    flags.DEFINE_integer("nn_queries", 8, "Queries in the nearest-neighbour grid image.", **fv)
    flags.DEFINE_integer("nn_k", 5, "Neighbours per query in the grid image.", **fv)
    flags.DEFINE_integer("tsne_points", 1500, "Points in the t-SNE image (0 disables it).", **fv)
    flags.DEFINE_bool("restart", False, "Delete the run's checkpoints, TensorBoard files and results first.", **fv)


def image_sources(cfg, data_root, check_decode=False):
    """Train/test :class:`experiments.sources.ImageSource` of an official dataset directory, with the
    recipe's image transforms; ``check_decode`` decodes every image first (``symm_keras.data.check_decode``)."""
    from symm_keras import data, models

    from experiments.configs import recipes
    from experiments.sources import ImageSource

    if not data_root:
        raise UsageError(f"--dataset {cfg.dataset} needs --data_root (see docs/data.md to download/prepare it)")
    if not os.path.isdir(data_root):
        raise UsageError(f"--data_root {data_root} is not a directory")
    try:
        index = data.load_split_index(cfg.dataset, data_root)
        if check_decode:
            data.check_decode(index, on_corrupt="fail")
    except (OSError, ValueError) as err:
        raise UsageError(f"--data_root {data_root}: {err}") from None
    prep = recipes.build_preprocessing(cfg, models.backbone_preprocessing(cfg.backbone))
    root = os.path.abspath(data_root)
    return ImageSource(index.train(), prep, "train", root), ImageSource(index.test(), prep, "test", root)


def given_flags(flag_values=FLAGS):
    names = ("config", "recipe", "dataset", "method", "batch_size", "steps", "epochs", "loss_kwargs", "method_kwargs")
    return {n: flag_values[n].value for n in names + CONFIG_FIELDS if flag_values[n].present}


def _check_run_flags(fv):
    logdir = fv.logdir
    if not logdir:
        raise UsageError("--logdir is required (the run directory for checkpoints, TensorBoard and results)")
    existing = os.path.abspath(logdir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--logdir {logdir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--logdir {logdir}: {existing} is not writable")
    if fv.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {fv.seed}")
    for name in ("log_every", "eval_batch_size"):
        if fv[name].value < 1:
            raise UsageError(f"--{name} must be >= 1, got {fv[name].value}")
    for name in ("nn_queries", "nn_k", "tsne_points"):
        if fv[name].value < 0:
            raise UsageError(f"--{name} must be >= 0, got {fv[name].value}")


def main(argv, fv=FLAGS):
    """Run the parsed command line ``fv`` (``argv``: what absl left unparsed)."""
    if len(argv) > 1:
        raise UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    for module in fv.plugins:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UsageError(f"--plugins {module}: {err}") from None
    if fv.list_configs:
        from experiments import configs

        for name in configs.list_configs():
            c = configs.get_config(name)
            print(f"{name:28s} {c.paper:12s} {c.table:8s} {c.row}")
        return 0
    cfg = resolve_config(given_flags(fv))
    if fv.show_config:
        from experiments.configs import recipes

        plan = recipes.plan(cfg) if cfg.dataset in recipes.TRAIN_IMAGES else cfg.to_dict()
        print(json.dumps(plan, indent=1, default=str))
        return 0
    _check_run_flags(fv)
    if cfg.dataset == "digits":
        train_source, test_source = digits_sources()
    else:
        train_source, test_source = image_sources(cfg, fv.data_root, fv.check_decode)
    run_training(
        cfg, train_source, test_source, fv.logdir, seed=fv.seed, strategy=fv.strategy,
        mixed_precision=fv.mixed_precision, log_every=fv.log_every, eval_batch_size=fv.eval_batch_size,
        nn_queries=fv.nn_queries, nn_k=fv.nn_k, tsne_points=fv.tsne_points, restart=fv.restart,
    )  # fmt: skip
    return 0


def run_main():
    define_flags()

    def _main(argv):
        try:
            return main(argv)
        except UsageError as err:
            print(f"train.py: error: {err}", file=sys.stderr)
            sys.exit(2)
        except EvaluationFailed as err:
            print(f"train.py: {err}", file=sys.stderr)
            sys.exit(1)
        except (TrainingDiverged, TrainingCollapsed) as err:
            print(f"train.py: {err}", file=sys.stderr)
            sys.exit(3)
        except TrainingInterrupted as err:
            print(f"train.py: {err}; rerun the same command to continue", file=sys.stderr)
            sys.exit(130)
        except KeyboardInterrupt:
            print("train.py: interrupted", file=sys.stderr)
            sys.exit(130)

    app.run(_main)


if __name__ == "__main__":
    run_main()
