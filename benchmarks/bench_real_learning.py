"""Does training learn on real images? Untrained vs trained Recall@1 on unseen Cars196 classes.

Real Cars196 images of ``../shared/data/cars196_train_side`` (box-cropped,
224 px; read its README): classes 1–49 train, 50–98 are the unseen classes
that Recall@1 is measured on. MobileNetV2 with the ImageNet weights of
``../shared/weights`` and a Glorot 512-d (``--embedding_dim``) head, trained
with the ``official`` Symm recipe's optimizer: Adam 1e-4 on the staircase
schedule, coupled L2 decay ``5e-3 · Σ ½‖w‖²`` over the non-batch-norm
variables, the head's gradient ×10 (``symm_keras.optimizers``). Batches of
``P`` classes × 2 images, random horizontal flip (our choice: no crop, the
images are small). For each loss (N-pair, Symm+N-pair) and batch-norm mode
(``train``: batch statistics; ``frozen``: inference mode, as small-batch
fine-tuning does) it prints, at step 0 and every ``--eval_every`` steps:
Recall@1 on the unseen classes, the training loss next to its trivial value
``log P`` (all embeddings equal), the mean embedding norm, and the share of
the backbone's pooled features that are zero on every unseen image ("dead").
The frozen backbone's Recall@1 (pooled ImageNet features) is printed first.

``--train head`` instead keeps the backbone frozen whole (inference mode,
never trained): its pooled features are computed once per image (the image
and, with ``--train_views 2``, its mirror image; no crop) and only the head is
trained, with the same optimizer; R@1, MAP@R and NMI on the unseen classes,
untrained head vs trained, per seed (``--seeds``; a seed gives both losses
the same head initialisation and batches). ``--train last_block`` freezes the
backbone up to block 15 the same way (its ``7 × 7 × 160`` outputs computed
once) and trains block 16, ``Conv_1`` and the head, with each ``--batchnorm``
mode in those layers.

    .venv/bin/python benchmarks/bench_real_learning.py --size 96 --steps 150 --classes_per_batch 16
    .venv/bin/python benchmarks/bench_real_learning.py --train head --size 224 --eval_images_per_class 0 \
        --classes_per_batch 32 --steps 2000 --eval_every 250 --seeds 0,1,2

Images are decoded and resized once (bilinear) and held in memory as uint8.
Figures: docs/reproduction.md ("Training that learns on real images").
"""

import argparse
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
DATA = os.path.join(SHARED, "data", "cars196_train_side")
WEIGHTS = os.path.join(SHARED, "weights", "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--weights", default=WEIGHTS)
    parser.add_argument("--size", type=int, default=96, help="input side in pixels")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--classes_per_batch", type=int, default=16)
    parser.add_argument("--embedding_dim", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight_decay", type=float, default=5e-3, help="coupled L2 coefficient (0: none)")
    parser.add_argument("--head_gradient", type=float, default=10.0, help="the head's gradient multiplier")
    parser.add_argument("--head_init_scale", type=float, default=1.0,
                        help="multiply the Glorot head kernel at init (< 1: smaller initial embeddings and logits)")
    parser.add_argument("--losses", default="npair,symm_npair")
    parser.add_argument("--batchnorm", default="train,frozen", help="comma list of train / frozen")
    parser.add_argument("--eval_images_per_class", type=int, default=40, help="unseen images per class (0: all)")
    parser.add_argument("--train_images_per_class", type=int, default=0,
                        help="train images per class 1-49 (0: all); a seeded random subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None,
                        help="comma list of seeds for --train head (default: --seed); each seed gives both losses "
                             "the same head initialisation and the same batches")  # fmt: skip
    parser.add_argument("--train", default="finetune", choices=("finetune", "head", "last_block"),
                        help="finetune: the whole model (--batchnorm modes); head: the frozen backbone in inference "
                             "mode, its pooled features computed once, only the embedding head trained; last_block: "
                             "the backbone up to block 15 frozen (its outputs computed once), block 16 + Conv_1 + "
                             "the head trained (--batchnorm modes)")  # fmt: skip
    parser.add_argument("--train_views", type=int, default=2, choices=(1, 2),
                        help="--train head: 1 = each train image as is, 2 = also its mirror image (a random one of "
                             "the two per image and step)")  # fmt: skip
    parser.add_argument("--features_cache", default=None,
                        help="--train head: .npz file for the pooled features (written if absent, read if present)")
    args = parser.parse_args(argv)
    for mode in args.batchnorm.split(","):
        if mode not in ("train", "frozen"):
            parser.error(f"--batchnorm takes train and/or frozen, got {mode!r}")
    args.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    for name in (args.data, args.weights):
        if not os.path.exists(name):
            parser.error(f"{name} not found (see ../shared/data/cars196_train_side/README.md, ../shared/weights)")
    return args


def load_images(index, size):
    """Every image of ``index`` decoded, resized to ``size × size`` (bilinear), uint8."""
    import tensorflow as tf

    out = np.empty((len(index), size, size, 3), np.uint8)
    for i, path in enumerate(index.full_paths()):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        out[i] = np.clip(np.round(tf.image.resize(image, (size, size)).numpy()), 0, 255).astype(np.uint8)
    return out


def load_split(args, train_index, unseen_index):
    t = time.perf_counter()
    train_images, unseen_images = load_images(train_index, args.size), load_images(unseen_index, args.size)
    print(f"loaded {len(train_images)} train images (classes 1-49), {len(unseen_images)} unseen (classes 50-98) "
          f"at {args.size} px in {time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
    return train_images, unseen_images


def split(args):
    from symm_keras import data

    index = data.load_split_index("cars196", args.data, check_files=False)
    rng = np.random.default_rng(args.seed)

    def subset(classes, per_class):
        chosen = []
        for c in classes:
            rows = np.flatnonzero(index.labels == c)
            if per_class and len(rows) > per_class:
                rows = np.sort(rng.choice(rows, per_class, replace=False))
            chosen.extend(rows)
        return index.subset(np.isin(np.arange(len(index)), chosen))

    unseen = subset(range(50, 99), args.eval_images_per_class)
    return subset(range(1, 50), args.train_images_per_class), unseen


def preprocess(images):
    return images.astype(np.float32) / 127.5 - 1.0  # MobileNetV2 ([-1, 1])


class Batches:
    """``P`` random classes × 2 random images per step, random horizontal flip."""

    def __init__(self, images, labels, classes_per_batch, seed):
        self.images, self.labels = images, labels
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.P, self.rng = classes_per_batch, np.random.default_rng(seed)
        if classes_per_batch > len(self.by_class):
            raise ValueError(f"--classes_per_batch {classes_per_batch} > the {len(self.by_class)} training classes")

    def rows(self):
        classes = self.rng.choice(len(self.by_class), self.P, replace=False)
        return np.concatenate([self.rng.choice(self.by_class[c], 2, replace=False) for c in classes])

    def next(self):
        rows = self.rows()
        x = self.images[rows]
        flip = self.rng.random(len(rows)) < 0.5
        x[flip] = x[flip, :, ::-1]
        return preprocess(x), self.labels[rows].astype(np.int32)


class FeatureBatches(Batches):
    """The same ``P × 2`` draw over precomputed features ``(views, n, d)``; a random view per image."""

    def next(self):
        rows = self.rows()
        views = self.rng.integers(len(self.images), size=len(rows))
        return self.images[views, rows], self.labels[rows].astype(np.int32)


def recall_at_1(features, labels):
    from symm_keras.evaluation import evaluate_embeddings

    return evaluate_embeddings(features, labels, recall_ks=(1,), metric="cosine", clustering=False).as_dict()[
        "recall@1"
    ]


def embed(model, images, batch=128):
    """Outputs for ``images`` in fixed-size batches (the last one padded: one traced shape)."""
    out = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        out.append(model.predict_on_batch(preprocess(padded))[: len(chunk)])
    return np.concatenate(out)


def build(args, batchnorm, seed):
    import keras

    from symm_keras import models
    from symm_keras.optimizers import StaircaseDecay, with_coupled_decay

    keras.utils.set_random_seed(seed)
    model = models.build_embedding_model("mobilenet_v2", embedding_dim=args.embedding_dim, weights=args.weights,
                                         input_size=args.size)  # fmt: skip
    if args.head_init_scale != 1.0:
        head = model.get_layer("embedding_head")
        head.kernel.assign(head.kernel * args.head_init_scale)
    if batchnorm == "frozen":
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    schedule = StaircaseDecay(args.lr, 5000, 0.5, stop_step=15000, stop_value=args.lr / 10)
    optimizer = with_coupled_decay(keras.optimizers.Adam(schedule), args.weight_decay, model=model,
                                   gradient_multipliers={"^embedding_head/": args.head_gradient})  # fmt: skip
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    features = keras.Model(model.inputs, backbone(model.inputs[0]))
    return model, optimizer, features


def loss_object(name):
    from symm_keras.losses.npair import NPairLoss
    from symm_keras.losses.symm_npair import SymmNPairLoss

    return {"npair": NPairLoss, "symm_npair": SymmNPairLoss}[name]()


def run(args, loss_name, batchnorm, train_images, train_labels, unseen_images, unseen_labels):
    model, optimizer, features = build(args, batchnorm, args.seed)
    model.compile(optimizer=optimizer, loss=loss_object(loss_name))
    batches = Batches(train_images, train_labels, args.classes_per_batch, args.seed + 1)
    rows, losses, start = [], [], time.perf_counter()

    def evaluate(step):
        emb = embed(model, unseen_images)
        pooled = embed(features, unseen_images)
        row = {"step": step, "recall@1": recall_at_1(emb, unseen_labels),
               "mean_norm": float(np.mean(np.linalg.norm(emb, axis=1))),
               "dead_features": float(np.mean(np.all(pooled == 0, axis=0))),
               "loss": float(np.mean(losses[-10:])) if losses else None}  # fmt: skip
        rows.append(row)
        print(f"  {loss_name:10s} bn={batchnorm:6s} step {step:4d}: R@1 {100 * row['recall@1']:5.1f}  "
              f"loss {'-' if row['loss'] is None else format(row['loss'], '.3f')} "
              f"(log P = {math.log(args.classes_per_batch):.3f})  "
              f"mean |e| {row['mean_norm']:.3g}  dead features {100 * row['dead_features']:.1f}%  "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)  # fmt: skip

    evaluate(0)
    for step in range(1, args.steps + 1):
        x, y = batches.next()
        losses.append(float(model.train_on_batch(x, y)))
        if step % args.eval_every == 0 or step == args.steps:
            evaluate(step)
    return rows


# MobileNetV2's last block and Conv_1 (a chain: block 16 has no residual), then the backbone's pooling layer;
# --train last_block trains them.
LAST_BLOCK = ("block_16_expand", "block_16_expand_BN", "block_16_expand_relu", "block_16_depthwise",
              "block_16_depthwise_BN", "block_16_depthwise_relu", "block_16_project", "block_16_project_BN",
              "Conv_1", "Conv_1_bn", "out_relu")  # fmt: skip


def pooled_features(args, train_index, unseen_index):
    """The frozen backbone's outputs: train ``(views, n, ...)`` (view 1: mirrored) and unseen ``(n, ...)``.

    Pooled ``(1280,)`` features, or for ``--train last_block`` the input of
    block 16 ``(7, 7, 160)`` at 224 px. The backbone runs in inference mode
    (batch norm on its ImageNet statistics) and is never trained, so these
    features cannot collapse.
    """
    import keras

    cut = LAST_BLOCK[0] if args.train == "last_block" else ""
    if args.features_cache and os.path.exists(args.features_cache):
        cached = np.load(args.features_cache)
        if cached["size"] == args.size and str(cached.get("cut", "")) == cut and len(cached["train"]) >= args.train_views:
            return cached["train"][: args.train_views], cached["unseen"]
    train_images, unseen_images = load_split(args, train_index, unseen_index)
    _, _, features = build(args, "train", args.seed)
    if cut:
        backbone = next(layer for layer in features.layers if isinstance(layer, keras.Model))
        features = keras.Model(backbone.inputs, backbone.get_layer(cut).input)
    train = np.stack([embed(features, train_images[:, :, ::step]) for step in (1, -1)[: args.train_views]])
    unseen = embed(features, unseen_images)
    if args.features_cache:
        np.savez(args.features_cache, train=train, unseen=unseen, size=args.size, cut=cut)
    return train, unseen


def build_head(args, in_shape, seed, batchnorm):
    """A Glorot ``EmbeddingHead`` on the features (after a fresh ImageNet ``LAST_BLOCK`` for ``--train
    last_block``, its batch norm frozen or training) with the ``official`` optimizer of :func:`build`."""
    import keras

    from symm_keras.models.embedding import EmbeddingHead
    from symm_keras.optimizers import StaircaseDecay, with_coupled_decay

    inputs = x = keras.Input(in_shape)
    if args.train == "last_block":
        _, _, features = build(args, "train", seed)
        backbone = next(layer for layer in features.layers if isinstance(layer, keras.Model))
        for layer in [backbone.get_layer(name) for name in LAST_BLOCK] + [backbone.layers[-1]]:
            if isinstance(layer, keras.layers.BatchNormalization) and batchnorm == "frozen":
                layer.trainable = False
            x = layer(x)
    keras.utils.set_random_seed(seed)
    model = keras.Model(inputs, EmbeddingHead(args.embedding_dim)(x))
    if args.head_init_scale != 1.0:
        model.get_layer("embedding_head").kernel.assign(model.get_layer("embedding_head").kernel * args.head_init_scale)
    schedule = StaircaseDecay(args.lr, 5000, 0.5, stop_step=15000, stop_value=args.lr / 10)
    optimizer = with_coupled_decay(keras.optimizers.Adam(schedule), args.weight_decay, model=model,
                                   gradient_multipliers={"^embedding_head/": args.head_gradient})  # fmt: skip
    return model, optimizer


def metrics(embeddings, labels, full):
    from symm_keras.evaluation import evaluate_embeddings

    result = evaluate_embeddings(embeddings, labels, recall_ks=(1,), metric="cosine", clustering=full).as_dict()
    return {k: result[k] for k in (("recall@1", "map@r", "nmi") if full else ("recall@1",))}


def run_head(args, loss_name, seed, batchnorm, train_features, train_labels, unseen_features, unseen_labels):
    """Train the head (and last block); R@1 on the unseen classes every ``--eval_every`` steps, MAP@R and NMI at 0
    and the end."""
    model, optimizer = build_head(args, train_features.shape[2:], seed, batchnorm)
    model.compile(optimizer=optimizer, loss=loss_object(loss_name))
    batches = FeatureBatches(train_features, train_labels, args.classes_per_batch, seed + 1)
    rows, losses, start = [], [], time.perf_counter()

    def evaluate(step, full):
        emb = np.concatenate([model.predict_on_batch(unseen_features[i : i + 512])
                              for i in range(0, len(unseen_features), 512)])  # fmt: skip
        row = {"step": step, **metrics(emb, unseen_labels, full),
               "mean_norm": float(np.mean(np.linalg.norm(emb, axis=1))),
               "loss": float(np.mean(losses[-50:])) if losses else None}  # fmt: skip
        rows.append(row)
        extra = f"MAP@R {100 * row['map@r']:5.2f}  NMI {100 * row['nmi']:5.2f}  " if full else ""
        print(f"  {loss_name:10s} seed {seed}{'' if batchnorm is None else ' bn=' + batchnorm} step {step:5d}: R@1 {100 * row['recall@1']:5.2f}  {extra}"
              f"loss {'-' if row['loss'] is None else format(row['loss'], '.3f')} "
              f"(log P = {math.log(args.classes_per_batch):.3f})  mean |e| {row['mean_norm']:.3g}  "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)  # fmt: skip

    evaluate(0, True)
    for step in range(1, args.steps + 1):
        x, y = batches.next()
        losses.append(float(model.train_on_batch(x, y)))
        if step == args.steps:
            evaluate(step, True)
        elif step % args.eval_every == 0:
            evaluate(step, False)
    return rows


def main_head(args, train_index, unseen_index):
    t = time.perf_counter()
    train_features, unseen_features = pooled_features(args, train_index, unseen_index)
    print(f"backbone features {train_features.shape} / {unseen_features.shape} in {time.perf_counter() - t:.0f} s",
          flush=True)  # fmt: skip
    if args.train == "head":
        print(f"frozen backbone (pooled features): {metrics(unseen_features, unseen_index.labels, True)}", flush=True)
    results = {}
    for seed in args.seeds:
        for loss_name in args.losses.split(","):
            for batchnorm in args.batchnorm.split(",") if args.train == "last_block" else [None]:
                results[(loss_name, seed, batchnorm)] = run_head(
                    args, loss_name, seed, batchnorm, train_features, train_index.labels, unseen_features,
                    unseen_index.labels)  # fmt: skip
    print(f"\nsummary (--train {args.train}): unseen classes 50-98, untrained -> last evaluation")
    for (loss_name, seed, batchnorm), rows in results.items():
        first, last = rows[0], rows[-1]
        print(f"  {loss_name:10s} seed {seed} bn={batchnorm}: " + "  ".join(
            f"{k} {100 * first[k]:5.2f} -> {100 * last[k]:5.2f}" for k in ("recall@1", "map@r", "nmi")))  # fmt: skip
    return results


def main(argv=None):
    args = parse_args(argv)
    import keras

    print(f"keras {keras.__version__} ({keras.backend.backend()}), {os.cpu_count()} CPUs; {args}", flush=True)
    train_index, unseen_index = split(args)
    if args.train in ("head", "last_block"):
        main_head(args, train_index, unseen_index)
        return 0
    train_images, unseen_images = load_split(args, train_index, unseen_index)
    _, _, features = build(args, "train", args.seed)
    print(f"frozen ImageNet backbone (pooled features): R@1 "
          f"{100 * recall_at_1(embed(features, unseen_images), unseen_index.labels):.1f}", flush=True)  # fmt: skip
    results = {}
    for loss_name in args.losses.split(","):
        for batchnorm in args.batchnorm.split(","):
            results[(loss_name, batchnorm)] = run(args, loss_name, batchnorm, train_images, train_index.labels,
                                                  unseen_images, unseen_index.labels)  # fmt: skip
    print("\nsummary: R@1 on unseen classes 50-98, untrained -> last (best) evaluation")
    for (loss_name, batchnorm), rows in results.items():
        first, last = rows[0]["recall@1"], rows[-1]["recall@1"]
        best = max(r["recall@1"] for r in rows)
        verdict = "learned" if last > first + 0.01 else "did NOT beat the untrained embedding"
        print(f"  {loss_name:10s} bn={batchnorm:6s}: {100 * first:5.1f} -> {100 * last:5.1f} ({100 * best:5.1f})  "
              f"{verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
