"""Smart Mining's share of an epoch: mining time vs the epoch's training time, in one run.

    KERAS_BACKEND=jax python benchmarks/bench_mining_share.py                 # SOP and CUB sizes
    KERAS_BACKEND=jax python benchmarks/bench_mining_share.py --sizes 5864 --source fanng

The paper (Harwood et al., ICCV 2017, Sec. 4): "when using GPU accelerated
code, our triplet selection accounts for less than 1 % of the total epoch
runtime". For each training-set size N this measures, with the Smart Mining
model of ``experiments/configs/smart_mining.py`` (GoogLeNet Caffe, 227 px,
64-d L2-normalised head, ratio-triplet + global loss, SGD):

* ``train``: one epoch of ``model.fit`` — ``ceil(N / 40)`` steps of 40
  triplets (120 images), as ``--method smart_mining`` runs it;
* ``embed``: ``model.predict`` over N images (batch 256), the pass the
  ``SmartMining`` callback makes at every epoch start;
* ``neighbours``: ``neighbour_lists`` (k = 30, ``--source``; the second call
  at this size, as in every epoch after the first — the first call's time,
  with XLA compilation, is printed beside it) and
  ``selection``: Algorithm 1 (``epoch_triplets``) on N clustered 64-d
  embeddings (``bench_mining.clustered_embeddings``: the images here are
  random, so their embeddings would have no class structure).

Images are random pixels held in memory, so ``train`` and ``embed`` leave out
JPEG decoding (which a real epoch pays in both). Printed: each part's seconds
and the shares ``(neighbours + selection) / epoch`` — the paper's "triplet
selection" — and ``(embed + neighbours + selection) / epoch``, where epoch =
train + embed + neighbours + selection.
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench_mining import CLASSES, clustered_embeddings  # noqa: E402
from symm_keras.losses import SmartMiningLoss  # noqa: E402
from symm_keras.neighbors import neighbour_lists  # noqa: E402
from symm_keras.mining.triplet_selection import epoch_triplets  # noqa: E402
from symm_keras.models import build_embedding_model, head_lr_multipliers, with_lr_multipliers  # noqa: E402


class RepeatedBatches(keras.utils.PyDataset):
    """``count`` batches that all hold the same in-memory arrays."""

    def __init__(self, x, y, count):
        super().__init__()
        self.x, self.y, self.count = x, y, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return (self.x, self.y) if self.y is not None else (self.x,)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[59551, 5864])
    parser.add_argument("--source", default="exact")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--triplets_per_batch", type=int, default=40)
    parser.add_argument("--embed_batch_size", type=int, default=256)
    parser.add_argument("--input_size", type=int, default=227)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--knn_precision", default="float32", choices=["float32", "bfloat16", "tensorfloat32"],
                        help="exact source: product precision of the candidate search (exact float32 re-rank)")
    args = parser.parse_args()
    if args.knn_precision != "float32" and args.source != "exact":
        parser.error("--knn_precision applies to --source exact")
    knn_options = {"precision": args.knn_precision} if args.knn_precision != "float32" else {}

    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(0)
    model = build_embedding_model("googlenet_caffe", embedding_dim=64, input_size=args.input_size)
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.1, momentum=0.9), head_lr_multipliers(10.0))
    model.compile(optimizer=optimizer, loss=SmartMiningLoss())
    rng = np.random.default_rng(0)
    t = args.triplets_per_batch
    train_x = rng.normal(scale=50.0, size=(3 * t, args.input_size, args.input_size, 3)).astype("float32")
    train_y = np.repeat(np.arange(t), 3).astype("int32")
    embed_x = rng.normal(scale=50.0, size=(args.embed_batch_size, args.input_size, args.input_size, 3))
    embed_x = embed_x.astype("float32")
    model.fit(RepeatedBatches(train_x, train_y, 3), epochs=1, verbose=0)  # compile outside the timings
    model.predict(RepeatedBatches(embed_x, None, 2), verbose=0)
    neighbour_lists(clustered_embeddings(300, 10, 64, seed=1)[0], 5, source=args.source)

    print(f"backend={keras.backend.backend()} device={_device_name()} precision={args.precision} "
          f"source={args.source} knn_precision={args.knn_precision} k={args.k} triplets/batch={t} "
          f"input={args.input_size}")
    for n in args.sizes:
        steps = math.ceil(n / t)
        start = time.perf_counter()
        model.fit(RepeatedBatches(train_x, train_y, steps), epochs=1, verbose=0)
        train = time.perf_counter() - start
        start = time.perf_counter()
        model.predict(RepeatedBatches(embed_x, None, math.ceil(n / args.embed_batch_size)), verbose=0)
        embed = time.perf_counter() - start
        x, labels = clustered_embeddings(n, CLASSES.get(n, max(2, n // 5)), 64)
        start = time.perf_counter()
        neighbour_lists(x, args.k, source=args.source, **knn_options)  # first call at this size: XLA compilation
        first_neighbours = time.perf_counter() - start
        start = time.perf_counter()
        indices, distances = neighbour_lists(x, args.k, source=args.source, **knn_options)
        neighbours = time.perf_counter() - start
        start = time.perf_counter()
        epoch_triplets(indices, distances, labels, kappa=4.0, num_batches=steps, triplets_per_batch=t,
                       mined_share=1.0, seed=0)
        selection = time.perf_counter() - start
        epoch = train + embed + neighbours + selection
        print(f"\nN={n}: {steps} steps of {3 * t} images")
        print(f"  train {train:8.2f}s ({steps * 3 * t / train:.0f} img/s)  embed {embed:6.2f}s "
              f"({n / embed:.0f} img/s)  neighbours {neighbours:6.3f}s (first call {first_neighbours:.3f}s)  "
              f"selection {selection:6.3f}s")
        print(f"  (neighbours + selection) / epoch = {100 * (neighbours + selection) / epoch:.2f} %  "
              f"(paper: < 1 %)")
        print(f"  (embed + neighbours + selection) / epoch = {100 * (embed + neighbours + selection) / epoch:.2f} %")
        sys.stdout.flush()


def _device_name():
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0])
    return keras.backend.backend()


if __name__ == "__main__":
    main()
