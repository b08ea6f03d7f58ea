"""DAMLRRM training step vs N-pair training step at the same total batch, side by side.

    .venv/bin/python benchmarks/bench_damlrrm.py                        # loss + 512-d head on features
    .venv/bin/python benchmarks/bench_damlrrm.py --model googlenet --input_size 227 --rounds 3 --steps 2
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_damlrrm.py

Two compiled Keras train steps (``model.train_on_batch``) on the same inputs
and the same total batch (default 120, the paper's 60 images per stream):

* ``npair``: ``NPairLoss`` on a P×2 batch (60 classes × 2 images);
* ``damlrrm``: ``DAMLRRMLoss`` (graph + shuffled loss, Prim trees in the
  graph) on a neat 12 × 5 stream + a shuffled stream of 60.

``--model head`` (default) trains only the 512-d embedding head on fixed
1024-d backbone features, so the loss is a large share of the step (the
worst case for DAMLRRM); ``--model googlenet`` trains the full GoogLeNet
(BVLC Caffe layout, random init) + head, i.e. a real training step;
``--model loss`` times the compiled loss value + gradient alone on fixed
512-d embeddings (the added cost itself).

Rounds alternate the two (order swapped each round) so load from other
processes hits both alike; the ratio ``damlrrm / npair`` of step times is
printed per round and as the median, for wall-clock time and for the
process CPU time (all threads; less sensitive to other processes on a
shared machine). The paper reports DAMLRRM 2.6× slower
than N-pair in Caffe (Table 8: 0.84 vs 2.2 iterations/s); goal here ≤ 1.1×.
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
from keras import ops  # noqa: E402

from symm_keras.losses.damlrrm import DAMLRRMLoss  # noqa: E402
from symm_keras.losses.npair import NPairLoss  # noqa: E402


def head_model(feature_dim, embedding_dim):
    inputs = keras.Input((feature_dim,))
    return keras.Model(inputs, keras.layers.Dense(embedding_dim, name="embedding_head")(inputs))


def googlenet_model(embedding_dim, input_size):
    from symm_keras.models import build_embedding_model

    return build_embedding_model("googlenet_caffe", embedding_dim=embedding_dim, input_size=input_size)


class LossStep:
    """Compiled ``(loss, d loss / d embeddings)`` of a loss on fixed embeddings."""

    def __init__(self, loss):
        self.loss = loss
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            self._step = jax.jit(jax.value_and_grad(lambda y, x: loss(y, x), argnums=1))
        elif backend == "tensorflow":
            import tensorflow as tf

            @tf.function(jit_compile=True)
            def step(y, x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    value = loss(y, x)
                return value, tf.convert_to_tensor(tape.gradient(value, x))

            self._step = step
        else:
            raise SystemExit(f"--model loss supports the jax and tensorflow backends, not {backend!r}")

    def train_on_batch(self, x, y):
        value, grad = self._step(y, x)
        return ops.convert_to_numpy(value) + 0.0 * float(ops.convert_to_numpy(grad)[0, 0])


def time_steps(model, x, y, steps):
    """Mean (wall, process CPU) seconds per step."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = model.train_on_batch(x, y)
    float(np.asarray(loss).reshape(-1)[0])  # host value: the step has finished
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu_start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="head", choices=["head", "googlenet", "loss"])
    parser.add_argument("--stream_size", type=int, default=60, help="images per stream (total batch = 2×)")
    parser.add_argument("--images_per_class", type=int, default=5, help="k of the neat stream")
    parser.add_argument("--embedding_dim", type=int, default=512)
    parser.add_argument("--feature_dim", type=int, default=1024, help="--model head: backbone feature size")
    parser.add_argument("--input_size", type=int, default=227, help="--model googlenet: image side")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round and loss")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="print each round as it finishes")
    args = parser.parse_args()
    if args.stream_size % args.images_per_class:
        raise SystemExit("--stream_size must be a multiple of --images_per_class (neat stream m × k)")

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    batch = 2 * args.stream_size
    if args.model == "head":
        x = rng.normal(size=(batch, args.feature_dim)).astype("float32")
    elif args.model == "loss":
        x = rng.normal(size=(batch, args.embedding_dim)).astype("float32")
    else:
        x = rng.normal(scale=50.0, size=(batch, args.input_size, args.input_size, 3)).astype("float32")
    x = ops.convert_to_tensor(x)
    npair_labels = (np.arange(batch) // 2).astype("int32")
    m, k = args.stream_size // args.images_per_class, args.images_per_class
    neat = np.repeat(np.arange(m), k)
    shuffled = rng.integers(0, 100, size=args.stream_size)
    damlrrm_labels = np.concatenate([neat, shuffled]).astype("int32")

    runs = {}
    for name, loss, labels in (
        ("npair", NPairLoss(), npair_labels),
        ("damlrrm", DAMLRRMLoss(neat_size=args.stream_size, images_per_class=k), damlrrm_labels),
    ):
        keras.utils.set_random_seed(args.seed)
        if args.model == "loss":
            runs[name] = (LossStep(loss), ops.convert_to_tensor(labels))
            continue
        if args.model == "head":
            model = head_model(args.feature_dim, args.embedding_dim)
        else:
            model = googlenet_model(args.embedding_dim, args.input_size)
        model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), loss=loss)
        runs[name] = (model, ops.convert_to_tensor(labels))

    for model, y in runs.values():
        time_steps(model, x, y, args.warmup)  # compile + warm caches
    seconds = {"npair": [], "damlrrm": []}
    for r in range(args.rounds):
        order = ["npair", "damlrrm"] if r % 2 == 0 else ["damlrrm", "npair"]
        for name in order:
            model, y = runs[name]
            seconds[name].append(time_steps(model, x, y, args.steps))
        if args.progress:
            a, b = seconds["npair"][-1][0], seconds["damlrrm"][-1][0]
            print(f"round {r}: npair {1e3 * a:.1f} ms, damlrrm {1e3 * b:.1f} ms (wall)", flush=True)

    shape = {"head": f"features {args.feature_dim}", "loss": f"embeddings {args.embedding_dim}"}.get(
        args.model, f"images {args.input_size}px"
    )
    print(
        f"backend={keras.backend.backend()} model={args.model} ({shape}) batch={batch} "
        f"(npair {batch // 2}x2 | damlrrm neat {m}x{k} + shuffled {args.stream_size}) "
        f"embedding={args.embedding_dim} steps={args.steps}x{args.rounds} rounds"
    )
    print(f"{'':>6} {'---------- wall ----------':>36} {'---------- CPU -----------':>36}")
    print(f"{'round':>6} {'npair ms':>10} {'damlrrm ms':>11} {'ratio':>13} {'npair ms':>10} {'damlrrm ms':>11} {'ratio':>13}")
    ratios = {0: [], 1: []}
    for r, (a, b) in enumerate(zip(seconds["npair"], seconds["damlrrm"])):
        row = f"{r:>6}"
        for clock in (0, 1):
            ratios[clock].append(b[clock] / a[clock])
            row += f" {1e3 * a[clock]:>10.3f} {1e3 * b[clock]:>11.3f} {b[clock] / a[clock]:>13.3f}"
        print(row)
    row = f"{'median':>6}"
    for clock in (0, 1):
        a = statistics.median(s[clock] for s in seconds["npair"])
        b = statistics.median(s[clock] for s in seconds["damlrrm"])
        row += f" {1e3 * a:>10.3f} {1e3 * b:>11.3f} {statistics.median(ratios[clock]):>13.3f}"
    print(row + "   damlrrm/npair (paper, Caffe: 2.6; goal <= 1.1)")


if __name__ == "__main__":
    main()
