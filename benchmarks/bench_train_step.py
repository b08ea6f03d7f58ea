"""Full training step vs backbone-only step: images/s side by side in one run.

    .venv/bin/python benchmarks/bench_train_step.py                      # GoogLeNet 227 px, batch 128
    .venv/bin/python benchmarks/bench_train_step.py --batch_size 32      # CPU: smaller batch
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_train_step.py --precision mixed_bfloat16

Two compiled Keras train steps (``model.train_on_batch``) on the same random
images, P×2 labels (``batch/2`` classes, each twice):

* ``backbone``: the backbone alone (default ``googlenet_caffe``, random init)
  → pooled features → a trivial loss ``mean(f²)``, forward + backward + Adam
  update of the backbone variables;
* ``full``: ``build_embedding_model`` (backbone + 512-d ``EmbeddingHead``) →
  the metric-learning loss (default Symm + N-pair, ``SymmNPairLoss``) with
  ``AdamWithLRMultipliers`` (head 10×), i.e. what ``experiments/train.py`` runs.

Rounds alternate the two (order swapped each round) so that load from other
processes hits both alike; the ratio ``full / backbone`` of images/s is
reported per round and as the median. Goal (issue 5): ratio ≥ 0.97.

``--torch`` (GPU, PyTorch + torchvision installed) adds a third step to every
round: torchvision GoogLeNet with an N-pair loss at the same batch, input size
and precision, run by ``torch_googlenet_step.py --serve`` in a subprocess
(give JAX part of the GPU: ``XLA_PYTHON_CLIENT_MEM_FRACTION=0.5``). Goal on
the GPU: full step ≥ 1.2 × the PyTorch step.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from symm_keras.models import (  # noqa: E402
    build_backbone,
    build_embedding_model,
    default_input_size,
    head_lr_multipliers,
    with_lr_multipliers,
)

LOSSES = {
    "symm_npair": ("symm_keras.losses.symm_npair", "SymmNPairLoss"),
    "npair": ("symm_keras.losses.npair", "NPairLoss"),
    "symm_angular": ("symm_keras.losses.symm_angular", "SymmAngularLoss"),
    "triplet": ("symm_keras.losses.triplet", "TripletLoss"),
}


def make_loss(name):
    import importlib

    module_name, class_name = LOSSES[name]
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"loss {name!r} ({module_name}.{class_name}) is not available: {err}") from None


def feature_energy(y_true, y_pred):
    """Trivial loss for the backbone-only step: mean of the squared pooled features."""
    return ops.mean(ops.square(ops.cast(y_pred, "float32")))


def time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss).reshape(-1)[0])  # train_on_batch returns host values: the step has finished
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="googlenet_caffe")
    parser.add_argument("--input_size", type=int, default=None, help="default: the backbone's (227 for GoogLeNet Caffe)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--embedding_dim", type=int, default=512)
    parser.add_argument("--loss", default="symm_npair", choices=sorted(LOSSES))
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jit_compile", default="auto", choices=["auto", "true", "false"],
        help="Keras compile(jit_compile=...); XLA on CPU is slow for convolutions under TensorFlow",
    )
    parser.add_argument("--torch", action="store_true", help="also time torchvision GoogLeNet (GPU) each round")
    args = parser.parse_args()
    if args.batch_size % 2:
        raise SystemExit("--batch_size must be even (P×2 batches: every class twice)")

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    size = args.input_size or default_input_size(args.backbone)
    rng = np.random.default_rng(args.seed)
    x = ops.convert_to_tensor(rng.normal(scale=50.0, size=(args.batch_size, size, size, 3)).astype("float32"))
    labels = ops.convert_to_tensor((np.arange(args.batch_size) // 2).astype("int32"))

    backbone = build_backbone(args.backbone, input_size=size)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    backbone.compile(optimizer=keras.optimizers.Adam(1e-4), loss=feature_energy, jit_compile=jit)
    full = build_embedding_model(args.backbone, embedding_dim=args.embedding_dim, input_size=size)
    optimizer = with_lr_multipliers(keras.optimizers.Adam(1e-4), head_lr_multipliers(10.0))
    full.compile(optimizer=optimizer, loss=make_loss(args.loss), jit_compile=jit)
    runs = {"backbone": (backbone, labels), "full": (full, labels)}

    for model, y in runs.values():
        time_steps(model, x, y, args.warmup)  # compile + warm caches
    torch_worker = start_torch_worker(args, size) if args.torch else None
    names = list(runs) + (["torch"] if torch_worker else [])
    per_round = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if name == "torch":
                torch_worker.stdin.write(f"{args.steps}\n")
                torch_worker.stdin.flush()
                per_round[name].append(float(torch_worker.stdout.readline()))
                continue
            model, y = runs[name]
            seconds = time_steps(model, x, y, args.steps)
            per_round[name].append(args.steps * args.batch_size / seconds)
    if torch_worker:
        torch_worker.stdin.close()
        torch_worker.wait()

    device = _device_name()
    print(
        f"backend={keras.backend.backend()} device={device} backbone={args.backbone} input={size} "
        f"batch={args.batch_size} loss={args.loss} precision={args.precision} jit_compile={args.jit_compile} "
        f"steps={args.steps}x{args.rounds} rounds"
    )
    print(f"{'round':>5} {'backbone img/s':>15} {'full img/s':>11} {'full/backbone':>14}")
    ratios = []
    for r, (b, f) in enumerate(zip(per_round["backbone"], per_round["full"])):
        ratios.append(f / b)
        print(f"{r:>5} {b:>15.2f} {f:>11.2f} {f / b:>14.3f}")
    b_med, f_med = statistics.median(per_round["backbone"]), statistics.median(per_round["full"])
    print(f"{'median':>5} {b_med:>9.2f} {f_med:>11.2f} {statistics.median(ratios):>14.3f}  (goal >= 0.97)")
    if torch_worker:
        print(f"{'round':>5} {'torch img/s':>15} {'full/torch':>11}")
        torch_ratios = [f / t for f, t in zip(per_round["full"], per_round["torch"])]
        for r, (t, ratio) in enumerate(zip(per_round["torch"], torch_ratios)):
            print(f"{r:>5} {t:>15.2f} {ratio:>11.3f}")
        t_med = statistics.median(per_round["torch"])
        print(f"{'median':>5} {t_med:>15.2f} {statistics.median(torch_ratios):>11.3f}  (goal >= 1.2 on a GPU)")


def start_torch_worker(args, size):
    """``torch_googlenet_step.py --serve`` at this run's settings, warmed up and waiting for step counts."""
    precision = {"float32": "fp32", "mixed_bfloat16": "bf16"}.get(args.precision)
    if precision is None:
        raise SystemExit(f"--torch compares float32 or mixed_bfloat16, not {args.precision}")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_googlenet_step.py")
    worker = subprocess.Popen(
        [sys.executable, script, "--serve", "--batch_size", str(args.batch_size), "--input_size", str(size),
         "--embedding_dim", str(args.embedding_dim), "--precision", precision, "--warmup", str(args.warmup)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    if worker.stdout.readline().strip() != "ready":
        raise SystemExit(f"torch_googlenet_step.py did not start (exit code {worker.wait()})")
    return worker


def _device_name():
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0])
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return gpus[0].name if gpus else "CPU"
    return "unknown"


if __name__ == "__main__":
    main()
