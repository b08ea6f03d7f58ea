"""Issue 20 on one GPU: the four side-by-side ratios against their goals, in one run.

    XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 KERAS_BACKEND=jax python benchmarks/gpu_issue20.py   # H100: 5-8 min (our guess)
    KERAS_BACKEND=jax python benchmarks/gpu_issue20.py --tiny     # CPU smoke run: seconds, figures meaningless

Keras on the JAX backend (the GPU machine of docs/gpu.md has no CUDA
TensorFlow; nothing here imports TensorFlow). PyTorch, when installed, is the
kNN reference; without it that ratio is reported as not measured. Every
ratio is taken within this run on the same device; timed things alternate
in rounds and the median is kept. Parts (``--parts``, default all, in this
order: eval, mining, step, sweep; a part whose estimated end, ``ESTIMATE_S``,
falls after ``--budget_s`` is skipped and says so):

* ``eval``: ``retrieval_metrics`` (Recall@{1,10,100,1000}, R-precision,
  MAP@R) on the Keras backend at SOP scale (60,502 × 512, 11,316 classes,
  ``bench_evaluation.sop_like``) against PyTorch's bare blocked ``mm`` +
  ``topk`` kNN (k = 1001) — goals ≤ 0.5 s and ≤ 1.2× PyTorch; k-means
  (Keras, k = 11,316) + NMI + F1 — goal ≤ 2 s; and, for the engineering,
  ``exact_knn`` (k = 1000) in float32 / bfloat16 / TF32 with the exact
  re-rank, with its agreement with the float32 lists. Printed with each: the
  device-to-host copies (``keras.ops.convert_to_numpy`` calls) and XLA
  compilations of a warm call.
* ``mining``: one Smart Mining epoch at SOP size (59,551 images): embedding
  pass (``predict``, batch 256) + exact neighbours (k = 30, 64-d, on the
  device; a warm call) + Algorithm 1 (``epoch_triplets``), against the
  training time of that epoch at the paper's batch (40 triplets = 120 images
  per step, ``ceil(N / 40)`` steps; ``--train_steps`` times fewer steps and
  scales them, printed as such). The Smart Mining model of
  ``bench_mining_share.py`` (GoogLeNet Caffe 227 px, 64-d head, ratio-triplet
  + global loss, SGD); images are random and held in memory. Goal:
  (neighbours + Algorithm 1) / epoch ≤ 1 % (the paper's "triplet
  selection"); the share with the embedding pass is printed beside it.
* ``step``: full Symm + N-pair train step vs the backbone-only step
  (``bench_train_step.py``: GoogLeNet Caffe 227 px, batch 128, float32).
  Goal: full / backbone images/s ≥ 0.97.
* ``sweep`` (engineering figures, no goal): ``retrieval_metrics`` at the
  default block size and ``--block_sizes``; ``exact_knn`` at the mining
  shape (59,551 × 64, k = 30) in float32 and TF32 at those block sizes; the
  relevance pass's top-k of one default score block, whole-row ``top_k``
  against the two-stage one.

The last lines (``goal ...``) list each figure, its goal and met / not met.
"""

import argparse
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # leave PyTorch room on the same GPU
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench_evaluation import sop_like  # noqa: E402

SOP_TEST, SOP_TEST_CLASSES, SOP_TRAIN, SOP_TRAIN_CLASSES = 60502, 11316, 59551, 11318
PARTS = ("eval", "mining", "step", "sweep")
# Our guesses of each part's seconds on an H100 (XLA compilation included), from the 2026-11-22
# run of docs/gpu.md: a part starts only if it should end inside --budget_s.
ESTIMATE_S = {"eval": 60, "mining": 150, "step": 120, "sweep": 60}
RESULTS = []  # (name, value, goal text, met)


def say(*parts):
    print(*parts, flush=True)


def goal(name, value, limit, larger_is_better=False, unit=""):
    met = value >= limit if larger_is_better else value <= limit
    RESULTS.append((name, value, f"{'>=' if larger_is_better else '<='} {limit:g}{unit}", met))


class Counted:
    """Counts device-to-host copies (``keras.ops.convert_to_numpy``) and XLA compilations inside ``with``."""

    listening = False
    compilations = 0

    def __enter__(self):
        if keras.backend.backend() == "jax" and not Counted.listening:
            import jax

            def listener(event, duration, **kwargs):
                if event.endswith("backend_compile_duration"):
                    Counted.compilations += 1

            jax.monitoring.register_event_duration_secs_listener(listener)
            Counted.listening = True
        self.original = keras.ops.convert_to_numpy
        self.copies, self.first_compilations = 0, Counted.compilations

        def counted(x):
            self.copies += 1
            return self.original(x)

        keras.ops.convert_to_numpy = counted
        return self

    def __exit__(self, *exc):
        keras.ops.convert_to_numpy = self.original
        self.compilations = Counted.compilations - self.first_compilations if Counted.listening else -1

    def __str__(self):
        return f"{self.copies} host copies, {self.compilations} XLA compilations"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def rounds(functions, count, deadline):
    """Median seconds of each function over ``count`` rounds (order rotated each round, ≥ 1 round)."""
    names, seconds = list(functions), {name: [] for name in functions}
    for r in range(count):
        if r and time.perf_counter() > deadline:
            break
        for name in names[r % len(names):] + names[: r % len(names)]:
            seconds[name].append(timed(functions[name])[1])
    return {name: statistics.median(values) for name, values in seconds.items()}


def torch_knn(x, k, block_rows=8192):
    """PyTorch blocked ``mm`` + ``topk`` (indices on the host), on its GPU when it has one."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = torch.from_numpy(x).to(device)
    out = torch.empty((x.shape[0], k), dtype=torch.int64, device=device)
    for start in range(0, x.shape[0], block_rows):
        out[start : start + block_rows] = torch.topk(data[start : start + block_rows] @ data.T, k, dim=1).indices
    return out.cpu().numpy()


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def part_eval(args, deadline):
    from symm_keras.evaluation import kmeans, normalized_mutual_info, pair_counting_f1, retrieval_metrics
    from symm_keras.neighbors import exact_knn

    ks = tuple(int(k) for k in args.recall_ks.split(","))
    x, labels = sop_like(args.eval_items, args.eval_classes, args.eval_dim, 2.2, 0)
    say(f"\n[eval] {x.shape[0]} x {x.shape[1]} float32, {args.eval_classes} classes, Recall@{ks} + MAP@R")
    ours = lambda: retrieval_metrics(x, labels, recall_ks=ks, backend="keras")[0]  # noqa: E731
    functions = {"ours": ours}
    first = {}
    metrics, first["ours"] = timed(ours)
    with Counted() as counts:
        ours()
    say(f"  retrieval_metrics first call {first['ours']:.3f} s; a warm call: {counts}")
    say("  " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
    if torch_available():
        functions["torch_knn"] = lambda: torch_knn(x, max(ks) + 1)
        _, first["torch_knn"] = timed(functions["torch_knn"])
    else:
        say("  PyTorch not installed: the torch kNN reference is not measured")
        RESULTS.append(("retrieval / torch bare kNN", None, "<= 1.2x", None))
    median = rounds(functions, args.rounds, deadline)
    say(f"  retrieval_metrics {median['ours']:.3f} s (median of rounds)")
    goal("retrieval + MAP@R seconds", median["ours"], 0.5, unit=" s")
    if "torch_knn" in median:
        ratio = median["ours"] / median["torch_knn"]
        say(f"  torch mm + topk kNN (k={max(ks) + 1}) {median['torch_knn']:.3f} s; ours / torch = {ratio:.2f}x")
        goal("retrieval / torch bare kNN", ratio, 1.2, unit="x")

    k = max(ks)
    reference = None
    for precision in ("float32", "bfloat16", "tensorfloat32"):
        if time.perf_counter() > deadline:
            say(f"  exact_knn {precision}: skipped (budget)")
            continue
        search = lambda p=precision: exact_knn(x, k, backend="keras", precision=p)  # noqa: E731
        (indices, scores), first_call = timed(search)
        with Counted() as counts:
            _, warm = timed(search)
        if reference is None:
            reference = (indices, scores)
        agreement = float(np.mean(indices == reference[0]))
        gap = float(np.max(np.abs(scores - reference[1])))
        say(f"  exact_knn k={k} {precision:13s} {warm:.3f} s warm (first {first_call:.2f} s; {counts}); "
            f"lists equal to float32 {agreement:.5f}, max |score - float32| {gap:.2e}")

    num_classes = args.eval_classes
    cluster = lambda: kmeans(x, num_classes, implementation="keras", seed=0, max_iter=20)  # noqa: E731
    _, first_kmeans = timed(cluster)
    (result, kmeans_seconds) = timed(cluster)
    (nmi, f1), scoring = timed(lambda: (normalized_mutual_info(labels, result.assignments),
                                        pair_counting_f1(labels, result.assignments)))
    say(f"  k-means (keras, k={num_classes}) {kmeans_seconds:.3f} s warm (first {first_kmeans:.2f} s, "
        f"{result.iterations} iterations) + NMI/F1 {scoring:.3f} s: nmi {nmi:.4f} f1 {f1:.4f}")
    goal("k-means + NMI seconds", kmeans_seconds + scoring, 2.0, unit=" s")


def part_sweep(args, deadline):
    from symm_keras.evaluation import retrieval_metrics
    from symm_keras.neighbors import default_block_size, exact_knn, top_k

    def warm_seconds(fn):
        fn()
        return timed(fn)[1]

    x, labels = sop_like(args.eval_items, args.eval_classes, args.eval_dim, 2.2, 0)
    ks = tuple(int(k) for k in args.recall_ks.split(","))
    default = default_block_size(x.shape[0], x.shape[0])
    say(f"\n[sweep] block sizes (default {default} rows at {x.shape[0]} items); warm calls")
    for rows in sorted({default, *args.block_sizes}):
        if time.perf_counter() > deadline:
            say("  skipped the rest (budget)")
            return
        seconds = warm_seconds(lambda r=rows: retrieval_metrics(x, labels, recall_ks=ks, block_size=r, backend="keras"))
        say(f"  retrieval_metrics block_size {rows:6d}: {seconds:.3f} s")
    mining_x = sop_like(args.mining_items, max(2, args.mining_items // 5), 64, 2.2, 1)[0]
    for precision in ("float32", "tensorfloat32"):
        for rows in sorted({default_block_size(mining_x.shape[0], mining_x.shape[0]), *args.block_sizes}):
            if time.perf_counter() > deadline:
                say("  skipped the rest (budget)")
                return
            seconds = warm_seconds(lambda r=rows, p=precision: exact_knn(mining_x, 30, metric="squared_euclidean",
                                                                         backend="keras", block_size=r, precision=p))
            say(f"  exact_knn {mining_x.shape[0]} x 64 k=30 {precision:13s} block_size {rows:6d}: {seconds:.3f} s")
    # The relevance pass's top-k (k = R_max) of one score block, eager: whole-row top_k vs the two-stage one.
    scores = keras.ops.convert_to_tensor(np.random.default_rng(0).random((default, x.shape[0]), dtype=np.float32))
    for chunk in (1, 64):
        seconds = warm_seconds(lambda c=chunk: keras.ops.convert_to_numpy(top_k(scores, args.relevance_k, chunk=c)[0]))
        say(f"  top_k of a {default} x {x.shape[0]} block, k={args.relevance_k}, "
            f"{'whole row' if chunk == 1 else 'two-stage (chunk 64)'}: {1000 * seconds:.2f} ms")


def small_backbone(size):
    """A 2-layer conv net (``--tiny`` only: seconds to compile on a CPU)."""
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h), name="small_backbone")


def backbone(args):
    from symm_keras.models import build_backbone

    if args.tiny:
        return small_backbone(args.input_size)
    return build_backbone("googlenet_caffe", input_size=args.input_size)


def part_mining(args, deadline):
    from bench_mining_share import RepeatedBatches
    from symm_keras.losses import SmartMiningLoss
    from symm_keras.models import build_embedding_model, head_lr_multipliers, with_lr_multipliers
    from symm_keras.neighbors import neighbour_lists

    try:
        from bench_mining import clustered_embeddings
        from symm_keras.mining.triplet_selection import epoch_triplets
    except ImportError as err:  # numba
        say(f"\n[mining] skipped: Algorithm 1 cannot be imported ({err})")
        return
    n, t = args.mining_items, args.triplets_per_batch
    steps = math.ceil(n / t)
    timed_steps = min(steps, args.train_steps or steps)
    say(f"\n[mining] N={n}: {steps} steps of {3 * t} images (training timed over {timed_steps} steps), k=30")
    keras.utils.set_random_seed(0)
    model = build_embedding_model(backbone(args), embedding_dim=64)
    optimizer = with_lr_multipliers(keras.optimizers.SGD(0.1, momentum=0.9), head_lr_multipliers(10.0))
    model.compile(optimizer=optimizer, loss=SmartMiningLoss())
    rng = np.random.default_rng(0)
    size = args.input_size
    train_x = rng.normal(scale=50.0, size=(3 * t, size, size, 3)).astype("float32")
    train_y = np.repeat(np.arange(t), 3).astype("int32")
    embed_x = rng.normal(scale=50.0, size=(args.embed_batch_size, size, size, 3)).astype("float32")
    model.fit(RepeatedBatches(train_x, train_y, 3), epochs=1, verbose=0)  # compile outside the timings
    model.predict(RepeatedBatches(embed_x, None, 2), verbose=0)
    _, train = timed(lambda: model.fit(RepeatedBatches(train_x, train_y, timed_steps), epochs=1, verbose=0))
    train *= steps / timed_steps
    _, embed = timed(lambda: model.predict(RepeatedBatches(embed_x, None, math.ceil(n / args.embed_batch_size)),
                                           verbose=0))
    x, labels = clustered_embeddings(n, max(2, round(n * SOP_TRAIN_CLASSES / SOP_TRAIN)), 64)
    neighbours = {}
    for precision in ("float32", "tensorfloat32", "bfloat16"):
        search = lambda p=precision: neighbour_lists(x, 30, backend="keras", precision=p)  # noqa: E731
        _, first_call = timed(search)
        with Counted() as counts:
            (indices, distances), neighbours[precision] = timed(search)
        say(f"  neighbours {precision:13s} {neighbours[precision]:.3f} s warm (first {first_call:.2f} s; {counts})")
        if precision == "float32":
            lists = (indices, distances)
    select = lambda: epoch_triplets(*lists, labels, kappa=4.0, num_batches=steps,  # noqa: E731
                                    triplets_per_batch=t, mined_share=1.0, seed=0)
    select()  # numba compilation outside the timing, as in every epoch after the first
    _, selection = timed(select)
    epoch = train + embed + neighbours["float32"] + selection
    share = 100 * (neighbours["float32"] + selection) / epoch
    say(f"  train {train:.2f} s ({steps * 3 * t / train:.0f} img/s), embed {embed:.2f} s, "
        f"neighbours {neighbours['float32']:.3f} s, Algorithm 1 {selection:.3f} s")
    say(f"  (neighbours + Algorithm 1) / epoch = {share:.2f} % (paper: < 1 %); with the embedding pass "
        f"{100 * (embed + neighbours['float32'] + selection) / epoch:.2f} %")
    best = min(neighbours, key=neighbours.get)
    say(f"  with the fastest neighbour search ({best}): "
        f"{100 * (neighbours[best] + selection) / (epoch - neighbours['float32'] + neighbours[best]):.2f} %")
    goal("mining share of an epoch %", share, 1.0, unit=" %")


def part_step(args, deadline):
    from bench_train_step import feature_energy, time_steps
    from symm_keras.losses import SymmNPairLoss
    from symm_keras.models import build_embedding_model, head_lr_multipliers, with_lr_multipliers

    batch, size = args.step_batch, args.input_size
    say(f"\n[step] batch {batch} ({batch // 2} classes x 2), {size} px, float32, Symm+N-pair vs backbone only")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.normal(scale=50.0, size=(batch, size, size, 3)).astype("float32"))
    y = keras.ops.convert_to_tensor((np.arange(batch) // 2).astype("int32"))
    alone = backbone(args)
    alone.compile(optimizer=keras.optimizers.Adam(1e-4), loss=feature_energy)
    full = build_embedding_model(backbone(args), embedding_dim=args.embedding_dim)
    full.compile(optimizer=with_lr_multipliers(keras.optimizers.Adam(1e-4), head_lr_multipliers(10.0)),
                 loss=SymmNPairLoss())
    for model in (alone, full):
        time_steps(model, x, y, 2)  # compile + warm caches
    median = rounds({"backbone": lambda: time_steps(alone, x, y, args.steps),
                     "full": lambda: time_steps(full, x, y, args.steps)}, args.rounds, deadline)
    ratio = median["backbone"] / median["full"]  # images/s ratio = inverse time ratio
    images = args.steps * batch
    say(f"  backbone {images / median['backbone']:.0f} img/s, full {images / median['full']:.0f} img/s (medians); "
        f"full / backbone = {ratio:.3f}")
    goal("full / backbone-only step", ratio, 0.97, larger_is_better=True)


def device_name():
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0])
    return keras.backend.backend()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and a small conv backbone (CPU smoke run)")
    parser.add_argument("--budget_s", type=float, default=480.0,
                        help="a part starts only if its estimated end (ESTIMATE_S) is inside this")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recall_ks", default="1,10,100,1000")
    parser.add_argument("--train_steps", type=int, default=0, help="time this many steps and scale (0: the epoch)")
    parser.add_argument("--block_sizes", type=int, nargs="*", default=None,
                        help="sweep: rows per block besides the default (default 2048 8192; --tiny 256)")
    parser.add_argument("--eval_items", type=int, default=None, help="override the eval/sweep size (classes scale)")
    parser.add_argument("--eval_dim", type=int, default=None, help="override the eval/sweep dimension")
    parser.add_argument("--mining_items", type=int, default=None, help="override the mining/sweep size")
    args = parser.parse_args()
    overrides = {name: getattr(args, name) for name in ("eval_items", "eval_dim", "mining_items")}
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {PARTS}")
    if args.tiny:
        args.eval_items, args.eval_classes, args.eval_dim, args.recall_ks = 600, 110, 16, "1,10"
        args.mining_items, args.triplets_per_batch, args.embed_batch_size = 240, 4, 32
        args.input_size, args.step_batch, args.embedding_dim, args.steps = 32, 8, 16, 2
        args.rounds = min(args.rounds, 1)
        args.relevance_k, default_blocks = 5, [256]
    else:
        args.eval_items, args.eval_classes, args.eval_dim = SOP_TEST, SOP_TEST_CLASSES, 512
        args.mining_items, args.triplets_per_batch, args.embed_batch_size = SOP_TRAIN, 40, 256
        args.input_size, args.step_batch, args.embedding_dim, args.steps = 227, 128, 512, 15
        args.relevance_k, default_blocks = 14, [2048, 8192]  # R_max: sop_like's largest class has 15 items
    if args.block_sizes is None:
        args.block_sizes = default_blocks
    for name, value in overrides.items():
        if value is not None:
            setattr(args, name, value)
    if overrides["eval_items"] is not None:
        args.eval_classes = max(2, round(args.eval_items * SOP_TEST_CLASSES / SOP_TEST))

    started = time.perf_counter()
    say(f"backend={keras.backend.backend()} device={device_name()} keras={keras.__version__} "
        f"tiny={args.tiny} parts={parts} budget={args.budget_s:.0f} s")
    for part in parts:
        elapsed = time.perf_counter() - started
        estimate = 0 if args.tiny else ESTIMATE_S[part]
        if elapsed + estimate > args.budget_s:
            say(f"\n[{part}] skipped: {elapsed:.0f} s elapsed + about {estimate} s would pass the "
                f"{args.budget_s:.0f} s budget")
            continue
        deadline = started + args.budget_s
        {"eval": part_eval, "sweep": part_sweep, "mining": part_mining, "step": part_step}[part](args, deadline)
        say(f"  ({part} done at {time.perf_counter() - started:.0f} s)")
    say("\nIssue 20 goals" + (" (tiny CPU smoke run: not the issue's figures)" if args.tiny else "") + ":")
    for name, value, limit, met in RESULTS:
        shown = "not measured" if value is None else f"{value:.3f}"
        say(f"goal {name}: {shown} (goal {limit}) {'' if met is None else 'met' if met else 'NOT met'}".rstrip())


if __name__ == "__main__":
    main()
