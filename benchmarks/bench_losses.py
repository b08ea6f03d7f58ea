"""Baseline vs Symm loss cost, side by side in one run: "loss ratio" and "step ratio".

    .venv/bin/python benchmarks/bench_losses.py                       # TF, batch 128 = 64×2, d = 512
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_losses.py
    .venv/bin/python benchmarks/bench_losses.py --families npair --repeats 50

For each loss family (triplet, semi-hard triplet, lifted structure, N-pair,
angular) two timings, each of the baseline loss and of its Symm variant:

* **loss**: a compiled (XLA: ``tf.function(jit_compile=True)`` / ``jax.jit``)
  forward + backward of the loss alone on fixed ``(B, d)`` embeddings (unit
  rows for triplet / semi-hard / lifted as in the paper, raw for N-pair /
  angular) → ``loss ratio = t_symm / t_baseline``;
* **step**: a compiled Keras ``train_on_batch`` (SGD) of a model whose 512-d
  head sits on a fixed-cost feature extractor (``--extractor_layers`` dense
  layers of width ``--extractor_width`` on ``--input_dim`` inputs; the
  backbone stand-in) → ``step ratio = t_symm / t_baseline``.

Baseline and Symm are timed in alternating rounds (order swapped every round)
so machine load hits both alike; each figure is the median over rounds of the
mean time of ``--inner`` calls. The paper's GPU figures: 0.2454 ms vs
0.2497 ms for the N-pair loss (ratio 1.018). Goals (issue 2): step ratio
≤ 1.02; loss ratio ≤ 1.05 on a GPU.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from symm_keras.layers import L2Normalize  # noqa: E402
from symm_keras.losses.angular import AngularLoss  # noqa: E402
from symm_keras.losses.lifted_structure import LiftedStructureLoss  # noqa: E402
from symm_keras.losses.npair import NPairLoss  # noqa: E402
from symm_keras.losses.semihard_triplet import SemiHardTripletLoss  # noqa: E402
from symm_keras.losses.symm_angular import SymmAngularLoss  # noqa: E402
from symm_keras.losses.symm_lifted_structure import SymmLiftedStructureLoss  # noqa: E402
from symm_keras.losses.symm_npair import SymmNPairLoss  # noqa: E402
from symm_keras.losses.symm_semihard_triplet import SymmSemiHardTripletLoss  # noqa: E402
from symm_keras.losses.symm_triplet import SymmTripletLoss  # noqa: E402
from symm_keras.losses.triplet import TripletLoss  # noqa: E402

# family: (baseline, symm, L2-normalised embeddings?)
FAMILIES = {
    "triplet": (TripletLoss, SymmTripletLoss, True),
    "semihard": (SemiHardTripletLoss, SymmSemiHardTripletLoss, True),
    "lifted": (LiftedStructureLoss, SymmLiftedStructureLoss, True),
    "npair": (NPairLoss, SymmNPairLoss, False),
    "angular": (AngularLoss, SymmAngularLoss, False),
}


def compiled_value_and_grad(loss):
    """XLA-compiled ``x ↦ (loss(labels, x), ∂loss/∂x)`` on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(labels, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(labels, x)
            return value, tape.gradient(value, x)

        return step
    if backend == "jax":
        import jax

        return jax.jit(jax.value_and_grad(lambda x, labels: loss(labels, x)), static_argnums=())
    raise SystemExit(f"bench_losses.py supports the tensorflow and jax backends, not {backend}")


def block(value):
    """Wait for an asynchronously dispatched result (JAX) and return it."""
    keras.tree.map_structure(lambda v: np.asarray(v), value)
    return value


def time_calls(fn, inner):
    start = time.perf_counter()
    for _ in range(inner):
        out = fn()
    block(out)
    return (time.perf_counter() - start) / inner


def loss_timer(loss_cls, labels, x):
    loss = loss_cls()
    step = compiled_value_and_grad(loss)
    if keras.backend.backend() == "jax":
        call = lambda: step(x, labels)  # noqa: E731
    else:
        call = lambda: step(labels, x)  # noqa: E731
    block(call())  # compile
    return call


def build_step_model(args, normalize, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((args.input_dim,))
    h = inputs
    for _ in range(args.extractor_layers):
        h = keras.layers.Dense(args.extractor_width, activation="relu")(h)
    out = keras.layers.Dense(args.dim)(h)
    if normalize:
        out = L2Normalize()(out)
    return keras.Model(inputs, out)


def step_timer(args, loss_cls, normalize, inputs, labels):
    model = build_step_model(args, normalize)
    model.compile(optimizer=keras.optimizers.SGD(1e-4), loss=loss_cls(), jit_compile=True)
    call = lambda: model.train_on_batch(inputs, labels)  # noqa: E731
    call()  # compile
    return call


def compare(make_baseline, make_symm, rounds, inner):
    base, symm = make_baseline(), make_symm()
    ratios, t_base, t_symm = [], [], []
    for r in range(rounds):
        order = [("b", base), ("s", symm)] if r % 2 == 0 else [("s", symm), ("b", base)]
        times = {name: time_calls(fn, inner) for name, fn in order}
        t_base.append(times["b"])
        t_symm.append(times["s"])
        ratios.append(times["s"] / times["b"])
    return statistics.median(t_base), statistics.median(t_symm), statistics.median(ratios)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES))
    parser.add_argument("--classes", type=int, default=64, help="P (batch = 2P)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size d")
    parser.add_argument("--rounds", type=int, default=15, help="alternating timing rounds")
    parser.add_argument("--inner", type=int, default=10, help="calls per round (loss timing)")
    parser.add_argument("--step_inner", type=int, default=3, help="calls per round (train step timing)")
    parser.add_argument("--input_dim", type=int, default=1024)
    parser.add_argument("--extractor_width", type=int, default=2048)
    parser.add_argument("--extractor_layers", type=int, default=2)
    parser.add_argument("--skip_step", action="store_true", help="only the loss timings")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")

    rng = np.random.default_rng(0)
    batch = 2 * args.classes
    labels = np.repeat(np.arange(args.classes), 2).astype("int32")
    raw = rng.normal(size=(batch, args.dim)).astype("float32")
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    inputs = rng.normal(size=(batch, args.input_dim)).astype("float32")
    step_flops = 6 * batch * (
        args.input_dim * args.extractor_width
        + (args.extractor_layers - 1) * args.extractor_width**2
        + args.extractor_width * args.dim
    )
    print(
        f"backend={keras.backend.backend()} batch={batch}={args.classes}x2 d={args.dim} "
        f"rounds={args.rounds} extractor={args.extractor_layers}x{args.extractor_width} "
        f"on {args.input_dim}-d inputs (~{step_flops / 1e9:.1f} GFLOP per train step)"
    )
    header = f"{'family':<9} {'loss base ms':>12} {'loss symm ms':>12} {'loss ratio':>10}"
    if not args.skip_step:
        header += f" {'step base ms':>12} {'step symm ms':>12} {'step ratio':>10}"
    print(header)
    for family in families:
        base_cls, symm_cls, normalize = FAMILIES[family]
        x = keras.ops.convert_to_tensor(unit if normalize else raw)
        y = keras.ops.convert_to_tensor(labels)
        lb, ls, lr = compare(
            lambda: loss_timer(base_cls, y, x), lambda: loss_timer(symm_cls, y, x), args.rounds, args.inner
        )
        row = f"{family:<9} {lb * 1e3:>12.3f} {ls * 1e3:>12.3f} {lr:>10.3f}"
        if not args.skip_step:
            sb, ss, sr = compare(
                lambda: step_timer(args, base_cls, normalize, inputs, labels),
                lambda: step_timer(args, symm_cls, normalize, inputs, labels),
                args.rounds,
                args.step_inner,
            )
            row += f" {sb * 1e3:>12.2f} {ss * 1e3:>12.2f} {sr:>10.3f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
