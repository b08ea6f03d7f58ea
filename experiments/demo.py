r"""``make demo``: N-pair vs Symm+N-pair on scikit-learn's digits, offline.

Trains a small MLP embedding (64 → 128 ReLU → 32) on digit classes 0–4 with
P×2 batches (5 classes × 2 images) under the N-pair loss (Symm eq. 7) and
under Symm+N-pair (eq. 8, released-code pairing), evaluates both on the
unseen classes 5–9 (query = gallery = test set; Recall@K, NMI, F1, MAP@R)
and prints one table, with the untrained network as the reference row. Every
number printed is measured in this run; nothing is copied from the paper
(8×8 digits are not the paper's benchmarks).

    python -m experiments.demo [--steps 300] [--seeds 0,1,2] [--logdir runs/demo]
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the demo's output to its own lines

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_integer("steps", 300, "Training steps per run.")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds; the table shows the mean over seeds.")
flags.DEFINE_string("logdir", None, "Where to keep the runs (default: a temporary directory).")
flags.DEFINE_float("lr", 1e-4, "Adam learning rate (the Symm paper's 1e-4).")
FLAGS = flags.FLAGS

METHODS = (("npair", "N-pair"), ("symm_npair", "Symm+N-pair"))
COLUMNS = ("nmi", "f1", "recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def untrained_metrics(test_source, seed):
    """Metrics of the randomly initialised network (same init as the runs)."""
    import keras

    from experiments import train

    keras.utils.set_random_seed(seed)
    model = train.mlp_embedding_model(test_source.x.shape[1], 32, seed=seed)
    metrics, *_ = train.evaluate(model, test_source, (1, 2, 4, 8), batch_size=512, seed=seed)
    return metrics


def format_table(rows):
    head = "| method | " + " | ".join(c.upper() if c in ("nmi", "f1") else c.replace("recall", "R").upper()
                                       for c in COLUMNS) + " | train s |"  # fmt: skip
    lines = [head, "| --- |" + " ---: |" * (len(COLUMNS) + 1)]
    for name, metrics, seconds in rows:
        cells = " | ".join(f"{100 * metrics[c]:.1f}" for c in COLUMNS)
        lines.append(f"| {name} | {cells} | {'—' if seconds is None else f'{seconds:.1f}'} |")
    return "\n".join(lines)


def run_demo(steps=300, seeds=(0, 1, 2), logdir=None, lr=1e-4, verbose=True):
    """Train and evaluate both methods for every seed; returns the table rows
    ``(name, mean metrics, mean train seconds)``, the per-seed metrics, the
    run directory and the number of test items."""
    import numpy as np

    from experiments import train

    train_source, test_source = train.digits_sources()
    root = logdir or tempfile.mkdtemp(prefix="symm_keras_demo_")
    per_seed = {"untrained": [untrained_metrics(test_source, s) for s in seeds]}
    seconds = {}
    for method, label in METHODS:
        per_seed[method], seconds[method] = [], []
        for seed in seeds:
            cfg = train.method_defaults(method, "digits").replace(steps=steps, lr=lr, eval_every=0,
                                                                   checkpoint_every=0)  # fmt: skip
            t0 = time.time()
            result = train.run_training(cfg, train_source, test_source, os.path.join(root, f"{method}_seed{seed}"),
                                        seed=seed, log_every=25, tsne_points=0, nn_queries=0, restart=True,
                                        verbose=0)  # fmt: skip
            seconds[method].append(time.time() - t0)
            per_seed[method].append(result["metrics"])
            if verbose:
                print(f"{label:12s} seed {seed}: R@1 {100 * result['metrics']['recall@1']:.1f}  "
                      f"NMI {100 * result['metrics']['nmi']:.1f}  ({seconds[method][-1]:.1f} s)", flush=True)  # fmt: skip

    def mean(runs):
        return {c: float(np.mean([r[c] for r in runs])) for c in COLUMNS}

    rows = [("untrained MLP", mean(per_seed["untrained"]), None)]
    rows += [(label, mean(per_seed[m]), float(np.mean(seconds[m]))) for m, label in METHODS]
    return rows, per_seed, root, len(test_source)


def main(argv):
    if len(argv) > 1:
        print(f"demo.py: error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        seeds = tuple(int(s) for s in FLAGS.seeds.split(",") if s.strip())
    except ValueError:
        print(f"demo.py: error: --seeds must be comma-separated integers, got {FLAGS.seeds!r}", file=sys.stderr)
        return 2
    if not seeds or FLAGS.steps < 1:
        print("demo.py: error: need at least one seed and --steps >= 1", file=sys.stderr)
        return 2
    t0 = time.time()
    logging.set_verbosity(logging.ERROR)
    import keras

    print(f"symm_keras demo — digits 0–4 train / 5–9 test, MLP 64→128→32, batch 5×2, Adam {FLAGS.lr}, "
          f"{FLAGS.steps} steps, seeds {list(seeds)}, Keras backend {keras.backend.backend()}", flush=True)  # fmt: skip
    rows, _, root, n_test = run_demo(FLAGS.steps, seeds, FLAGS.logdir, FLAGS.lr)
    print()
    print(f"Unseen classes 5–9 (n={n_test}), mean over {len(seeds)} seed(s), in %:")
    print(format_table(rows))
    print(f"\nruns (TensorBoard, results.json): {root}\ntotal wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    app.run(main)
