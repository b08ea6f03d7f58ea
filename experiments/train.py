r"""Train an embedding with one of the suite's methods; resume, evaluate, report.

    python -m experiments.train --config symm_npair_cub --data_root ~/data/CUB_200_2011
    python -m experiments.train --dataset cars196 --data_root DIR --method npair \
        --steps 3000 --logdir runs/npair_cars
    python -m experiments.train --list_configs

``--config NAME`` picks a paper-table row (``experiments/configs``); without
it the method's default row for ``--dataset`` is used. Any flag given on the
command line overrides the row. Runs are resumable: restarting the same
command with the same ``--logdir`` continues from the last checkpoint (model
and optimizer state, step, sampler position). At the end the run writes
``results.json`` and ``results.md`` (our NMI, F1, Recall@K, MAP@R next to the
paper's numbers for the row). TensorBoard: ``tensorboard --logdir LOGDIR``.

``--dataset digits`` (scikit-learn's 8×8 digits, classes 0–4 train / 5–9
test, MLP backbone) is the offline dataset of ``make demo`` and the tests.
"""

import dataclasses
import json
import os
import sys
import time

from absl import app, flags

METHODS = (
    "triplet", "semihard", "lifted", "npair", "angular", "contrastive",
    "symm_triplet", "symm_semihard", "symm_lifted", "symm_npair", "symm_angular",
    "damlrrm", "smart_mining",
)  # fmt: skip
DATASETS = ("cub", "cars196", "sop", "digits")
OPTIMIZERS = ("adam", "sgd", "adamw", "rmsprop")
PRECISIONS = ("none", "float16", "bfloat16")

FLAGS = flags.FLAGS


def define_flags():
    """Define the command-line flags (only when train.py is the program, so
    importing this module from the demo, reproduce.py or tests defines none)."""
    flags.DEFINE_string("config", None, "Experiment config (paper-table row) to run, e.g. symm_npair_cub.")
    flags.DEFINE_bool("list_configs", False, "Print the registered configs and exit.")
    flags.DEFINE_enum("dataset", None, DATASETS, "Dataset (digits = offline demo data).")
    flags.DEFINE_string("data_root", None, "Dataset directory (official layout; see docs/data.md).")
    flags.DEFINE_enum("method", None, METHODS, "Training method.")
    flags.DEFINE_string("backbone", None, "Backbone name (symm_keras.models registry; 'mlp' for digits).")
    flags.DEFINE_string("backbone_weights", None, "'imagenet', a weights file, or 'none'.")
    flags.DEFINE_integer("embedding_dim", None, "Embedding size.")
    flags.DEFINE_bool("l2_normalize", None, "L2-normalise the embeddings in the model.")
    flags.DEFINE_integer("input_size", None, "Crop size in pixels (227 for GoogLeNet as in the papers).")
    flags.DEFINE_integer("batch_size", None, "Batch size = classes_per_batch × images_per_class.")
    flags.DEFINE_integer("classes_per_batch", None, "P of a P×K batch.")
    flags.DEFINE_integer("images_per_class", None, "K of a P×K batch (2 in the Symm paper).")
    flags.DEFINE_integer("steps", None, "Training steps (exclusive with --epochs).")
    flags.DEFINE_integer("epochs", None, "Training epochs (exclusive with --steps).")
    flags.DEFINE_enum("optimizer", None, OPTIMIZERS, "Optimizer.")
    flags.DEFINE_float("lr", None, "Base learning rate.")
    flags.DEFINE_float("momentum", None, "SGD momentum.")
    flags.DEFINE_float("weight_decay", None, "Weight decay (SGD/AdamW).")
    flags.DEFINE_float("head_lr_multiplier", None, "Learning-rate multiplier of the embedding head.")
    flags.DEFINE_bool("freeze_batchnorm", None, "Run the backbone's batch-norm layers in inference mode (small batches).")
    flags.DEFINE_string("loss_kwargs", None, 'JSON dict of loss arguments, e.g. \'{"pairs": "paper"}\'.')
    flags.DEFINE_string("method_kwargs", None, "JSON dict of method arguments.")
    flags.DEFINE_string("logdir", None, "Run directory (checkpoints, TensorBoard, results). Required.")
    flags.DEFINE_integer("seed", 0, "Run seed (weights init, batch sampling).")
    flags.DEFINE_integer("eval_every", None, "Evaluate on the test split every N steps (0: only at the end).")
    flags.DEFINE_integer("checkpoint_every", None, "Checkpoint every N steps (and always at the end).")
    flags.DEFINE_integer("log_every", 10, "Write training scalars every N steps.")
    flags.DEFINE_enum("strategy", "default", ("default", "mirrored"), "Multi-device strategy.")
    flags.DEFINE_enum("mixed_precision", "none", PRECISIONS, "Mixed-precision compute dtype.")
    flags.DEFINE_integer("eval_batch_size", 256, "Batch size for embedding the test split.")
    flags.DEFINE_integer("nn_queries", 8, "Queries in the nearest-neighbour grid image.")
    flags.DEFINE_integer("nn_k", 5, "Neighbours per query in the grid image.")
    flags.DEFINE_integer("tsne_points", 1500, "Points in the t-SNE image (0 disables it).")
    flags.DEFINE_bool("restart", False, "Ignore (and delete) existing checkpoints in --logdir.")


_CONFIG_FIELDS = (
    "backbone", "backbone_weights", "embedding_dim", "l2_normalize", "input_size",
    "classes_per_batch", "images_per_class", "optimizer", "lr", "momentum", "weight_decay",
    "head_lr_multiplier", "freeze_batchnorm", "eval_every", "checkpoint_every",
)  # fmt: skip


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last checkpoint holds finite weights."""


class UsageError(ValueError):
    """Unknown or inconsistent flags."""


# --------------------------------------------------------------------------- config


def default_config_name(method, dataset):
    """The row ``--method M --dataset D`` runs when no ``--config`` is given."""
    from experiments import configs

    names = configs.list_configs(dataset=dataset)
    matches = [n for n in names if configs.get_config(n).method == method]
    preferred = [n for n in matches if n == f"{method}_{dataset}"]
    return (preferred or matches or [None])[0]


def method_defaults(method, dataset):
    """Settings for a method/dataset pair without a table row (Symm defaults)."""
    from experiments.configs import ExperimentConfig

    if dataset == "digits":
        return ExperimentConfig(
            name=f"{method}_digits", dataset="digits", method=method, backbone="mlp", backbone_weights=None,
            embedding_dim=32, input_size=64, classes_per_batch=5, images_per_class=2, lr=1e-4,
            head_lr_multiplier=1.0, steps=300, eval_every=100, checkpoint_every=100,
            l2_normalize=method in ("triplet", "semihard", "lifted", "symm_triplet", "symm_semihard", "symm_lifted"),
            notes="offline demo settings (no paper row)",
        )  # fmt: skip
    return ExperimentConfig(name=f"{method}_{dataset}", dataset=dataset, method=method, steps=2000, eval_every=500)


def resolve_config(values):
    """Merge ``--config`` (or the method default) with explicitly given flags.

    ``values`` maps flag names to the values given on the command line (only
    those actually present). Raises :class:`UsageError` on inconsistencies.
    """
    from experiments import configs

    name = values.get("config")
    if name:
        try:
            cfg = configs.get_config(name)
        except ValueError as err:
            raise UsageError(str(err)) from None
        for key in ("dataset", "method"):
            if values.get(key) is not None and values[key] != getattr(cfg, key):
                raise UsageError(
                    f"--{key} {values[key]} contradicts --config {name} (which is {key}={getattr(cfg, key)}); "
                    f"drop --{key} or pick another config"
                )
    else:
        method, dataset = values.get("method"), values.get("dataset")
        if method is None or dataset is None:
            raise UsageError("give --config NAME, or both --method and --dataset")
        row = default_config_name(method, dataset) if dataset != "digits" else None
        cfg = configs.get_config(row) if row else method_defaults(method, dataset)

    changes = {k: values[k] for k in _CONFIG_FIELDS if values.get(k) is not None}
    if changes.get("backbone_weights") == "none":
        changes["backbone_weights"] = None
    for key in ("loss_kwargs", "method_kwargs"):
        if values.get(key) is not None:
            try:
                parsed = json.loads(values[key])
            except json.JSONDecodeError as err:
                raise UsageError(f"--{key} is not valid JSON ({err}): {values[key]!r}") from None
            if not isinstance(parsed, dict):
                raise UsageError(f"--{key} must be a JSON object, got {values[key]!r}")
            changes[key] = dict(getattr(cfg, key), **parsed)
    if values.get("steps") is not None and values.get("epochs") is not None:
        raise UsageError("give --steps or --epochs, not both")
    if values.get("steps") is not None:
        changes.update(steps=values["steps"], epochs=None)
    if values.get("epochs") is not None:
        changes.update(epochs=values["epochs"], steps=None)

    batch = values.get("batch_size")
    if batch is not None:
        K = changes.get("images_per_class", cfg.images_per_class)
        if "classes_per_batch" in changes:
            if changes["classes_per_batch"] * K != batch:
                raise UsageError(
                    f"--batch_size {batch} != --classes_per_batch {changes['classes_per_batch']} × "
                    f"images_per_class {K}"
                )
        elif batch % K:
            raise UsageError(f"--batch_size {batch} is not a multiple of images_per_class {K}")
        else:
            changes["classes_per_batch"] = batch // K
    if changes:
        cfg = cfg.replace(**changes)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    """Clear errors for values that cannot work."""
    if cfg.method not in METHODS:
        from experiments import methods

        if cfg.method not in methods.available_methods():
            raise UsageError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    if (cfg.steps is None) == (cfg.epochs is None):
        raise UsageError(f"config {cfg.name}: exactly one of steps/epochs must be set")
    for key in ("steps", "epochs"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise UsageError(f"--{key} must be >= 1, got {value}")
    for key in ("embedding_dim", "input_size", "classes_per_batch", "images_per_class"):
        if getattr(cfg, key) < 1:
            raise UsageError(f"--{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.classes_per_batch < 2:
        raise UsageError(f"--classes_per_batch must be >= 2 (a batch needs negatives), got {cfg.classes_per_batch}")
    if not cfg.lr > 0:
        raise UsageError(f"--lr must be > 0, got {cfg.lr}")
    if cfg.optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")
    if cfg.head_lr_multiplier < 0:
        raise UsageError(f"--head_lr_multiplier must be >= 0, got {cfg.head_lr_multiplier}")
    if cfg.eval_every < 0 or cfg.checkpoint_every < 0:
        raise UsageError("--eval_every and --checkpoint_every must be >= 0")
    if cfg.method.startswith("symm_") and cfg.images_per_class != 2:
        raise UsageError(
            f"--method {cfg.method} uses the Symm P×2 layout (anchor + positive per class); "
            f"got images_per_class={cfg.images_per_class}"
        )
    if cfg.dataset == "digits" and cfg.backbone != "mlp":
        raise UsageError(f"--dataset digits trains the 'mlp' backbone, got --backbone {cfg.backbone}")
    if cfg.dataset != "digits" and cfg.backbone == "mlp":
        raise UsageError(f"--backbone mlp is for --dataset digits (feature vectors), not {cfg.dataset}")


# --------------------------------------------------------------------------- data


def digits_sources(train_classes=(0, 1, 2, 3, 4), test_classes=(5, 6, 7, 8, 9)):
    """scikit-learn's digits (1,797 8×8 images, pixel values /16) split by class."""
    from sklearn.datasets import load_digits

    from experiments.sources import ArraySource

    digits = load_digits()
    x, y = digits.data.astype("float32") / 16.0, digits.target.astype("int64")
    train = ArraySource(x[np.isin(y, train_classes)], y[np.isin(y, train_classes)], name="digits-train")
    test = ArraySource(x[np.isin(y, test_classes)], y[np.isin(y, test_classes)], name="digits-test")
    return train, test


def image_sources(cfg, data_root):
    """Train/test :class:`ImageSource` of an official dataset directory."""
    from experiments.sources import ImageSource

    if not data_root:
        raise UsageError(f"--dataset {cfg.dataset} needs --data_root (see docs/data.md to download/prepare it)")
    if not os.path.isdir(data_root):
        raise UsageError(f"--data_root {data_root} is not a directory")
    from symm_keras import data

    index = data.load_split_index(cfg.dataset, data_root)
    mode = cfg.preprocessing or _backbone_preprocessing(cfg.backbone)
    prep = data.ImagePreprocessing(crop_size=cfg.input_size, resize=cfg.resize, mode=mode)
    return ImageSource(index.train(), prep, "train"), ImageSource(index.test(), prep, "test")


def _backbone_preprocessing(backbone):
    from symm_keras import models

    return models.backbone_preprocessing(backbone)


# --------------------------------------------------------------------------- model


def mlp_embedding_model(input_dim, embedding_dim, hidden=(128,), l2_normalize=False, seed=0):
    """Small MLP backbone + Glorot-initialised ``embedding_head`` (digits, tests)."""
    import keras

    inputs = keras.Input((input_dim,), name="features")
    h = inputs
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", name=f"backbone_dense_{i}",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))(h)  # fmt: skip
    out = keras.layers.Dense(embedding_dim, name="embedding_head",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100))(h)  # fmt: skip
    if l2_normalize:
        out = keras.layers.UnitNormalization(axis=-1, name="l2_normalize")(out)
    return keras.Model(inputs, out, name="mlp_embedding")


def build_model(cfg, train_source, seed):
    if cfg.backbone == "mlp":
        model = mlp_embedding_model(int(np.prod(train_source.input_shape)), cfg.embedding_dim,
                                    l2_normalize=cfg.l2_normalize, seed=seed)  # fmt: skip
    else:
        from symm_keras import models

        model = models.build_embedding_model(
            backbone=cfg.backbone,
            embedding_dim=cfg.embedding_dim,
            l2_normalize=cfg.l2_normalize,
            weights=cfg.backbone_weights,
            input_size=cfg.input_size,
        )
    if cfg.freeze_batchnorm:
        freeze_batchnorm(model)
    return model


def freeze_batchnorm(model):
    """Put every BatchNormalization layer in inference mode (Keras 3: a
    non-trainable BN layer uses its moving statistics); returns how many."""
    import keras

    frozen = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def build_optimizer(cfg):
    import keras

    kwargs = {"learning_rate": cfg.lr}
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=cfg.momentum, weight_decay=cfg.weight_decay or None, **kwargs)
    elif cfg.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=cfg.weight_decay, **kwargs)
    elif cfg.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(**kwargs)
    else:
        optimizer = keras.optimizers.Adam(weight_decay=cfg.weight_decay or None, **kwargs)
    if cfg.head_lr_multiplier != 1.0:
        from symm_keras.models import head_lr_multipliers, with_lr_multipliers

        # variables under the "embedding_head" layer (build_embedding_model and the MLP name it so)
        optimizer = with_lr_multipliers(optimizer, head_lr_multipliers(cfg.head_lr_multiplier))
    return optimizer


def current_learning_rate(optimizer, step, fallback):
    """The base learning rate at ``step``: the schedule's value, else the
    optimizer's variable; on JAX, ``fit`` detaches variable values
    mid-epoch, then the last known value (``fallback``) is used."""
    import keras

    lr = getattr(optimizer, "_learning_rate", None)
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(lr(step)))
    try:
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    except (TypeError, ValueError):
        return float(fallback)


# --------------------------------------------------------------------------- evaluation


def embed(model, source, batch_size):
    if hasattr(source, "eval_arrays"):
        x, labels = source.eval_arrays()
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), "float32"), labels
    embeddings, labels = [], []
    for x, y in source.eval_dataset(batch_size=batch_size).as_numpy_iterator():  # numpy: JAX cannot take tf tensors
        embeddings.append(np.asarray(model.predict_on_batch(x), "float32"))
        labels.append(np.asarray(y))
    return np.concatenate(embeddings), np.concatenate(labels)


def evaluate(model, source, recall_ks, batch_size, seed):
    """Embed the test split and compute every retrieval/clustering metric."""
    from symm_keras.evaluation import evaluate_embeddings

    embeddings, labels = embed(model, source, batch_size)
    result = evaluate_embeddings(embeddings, labels, recall_ks=recall_ks, seed=seed)
    metrics = result.as_dict()
    meta = result.metadata()
    return metrics, embeddings, labels, _jsonable(meta)


def _jsonable(obj):
    try:
        return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    except (TypeError, ValueError):
        return str(obj)


def write_visuals(writer, logdir, source, embeddings, labels, step, nn_queries, nn_k, tsne_points, seed):
    """Projector files, nearest-neighbour grid and t-SNE image of the test embedding."""
    from experiments import summaries

    eval_dir = os.path.join(logdir, "eval")
    summaries.write_projector(eval_dir, embeddings, labels)
    rng = np.random.default_rng(seed)
    if nn_queries > 0 and nn_k > 0 and len(labels) > nn_k:
        queries = np.sort(rng.choice(len(labels), size=min(nn_queries, len(labels)), replace=False))
        e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        sims = e[queries] @ e.T
        sims[np.arange(len(queries)), queries] = -np.inf
        neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :nn_k]
        correct = labels[neighbours] == labels[queries][:, None]
        grid = summaries.nearest_neighbour_grid(
            source.thumbnails(queries), source.thumbnails(neighbours.reshape(-1)).reshape(
                (len(queries), nn_k) + source.thumbnails(queries[:1]).shape[1:]), correct)  # fmt: skip
        writer.image("nearest_neighbours", grid, step)
    if tsne_points > 0 and len(labels) >= 3:
        writer.image("tsne", summaries.tsne_image(embeddings, labels, max_points=tsne_points, seed=seed), step)


# --------------------------------------------------------------------------- results


def results_table(cfg, metrics, recall_ks):
    """Markdown table: our metrics (%) next to the paper's for the row."""
    keys = ["nmi", "f1"] + [f"recall@{k}" for k in recall_ks] + ["map@r"]
    paper = cfg.paper_results or {}
    title = f"{cfg.row or cfg.method} — {cfg.dataset}" + (f" ({cfg.paper} {cfg.table})" if cfg.table else "")
    lines = [f"### {title}", "", "| metric | ours (%) | paper (%) |", "| --- | ---: | ---: |"]
    for key in keys:
        ours = metrics.get(key)
        ours_s = f"{100 * ours:.1f}" if ours is not None else "—"
        theirs = paper.get(key)
        lines.append(f"| {key} | {ours_s} | {theirs if theirs is not None else '—'} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- training


def _set_precision(mixed_precision):
    import keras

    policy = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[mixed_precision]
    keras.mixed_precision.set_global_policy(policy)


def total_steps(cfg, steps_per_epoch):
    return int(cfg.steps) if cfg.steps is not None else int(cfg.epochs) * steps_per_epoch


def fit_segments(start, total, steps_per_epoch):
    """Split global steps ``[start, total)`` into ``model.fit`` calls
    ``(initial_epoch, epochs, steps_per_epoch, first_step)`` that respect epoch
    boundaries (a resumed partial epoch and a short last epoch get their own call)."""
    segments, step = [], start
    while step < total:
        epoch = step // steps_per_epoch
        epoch_end = (epoch + 1) * steps_per_epoch
        if step % steps_per_epoch == 0 and total - step >= steps_per_epoch:
            n = (total - step) // steps_per_epoch
            segments.append((epoch, epoch + n, steps_per_epoch, step))
            step += n * steps_per_epoch
        else:
            end = min(epoch_end, total)
            segments.append((epoch, epoch + 1, end - step, step))
            step = end
    return segments


def run_training(cfg, train_source, test_source, logdir, seed=0, strategy="default", mixed_precision="none",
                 log_every=10, eval_batch_size=256, nn_queries=8, nn_k=5, tsne_points=1500, restart=False,
                 verbose=1):  # fmt: skip
    """Train ``cfg`` on ``train_source``, evaluate on ``test_source``; resumable.

    ``strategy``: ``"default"``, ``"mirrored"`` or a ``tf.distribute``
    strategy instance. Returns the results dict also written to
    ``<logdir>/results.json``.
    """
    import keras

    from experiments import methods, summaries
    from experiments.checkpoints import CheckpointManager
    from experiments.distribution import GlobalBatchLoss, GlobalBatchMetric, setup_strategy

    os.makedirs(logdir, exist_ok=True)
    manager = CheckpointManager(os.path.join(logdir, "checkpoints"))
    if restart:
        import shutil

        shutil.rmtree(manager.directory, ignore_errors=True)
    latest = manager.latest()
    config_dict = _jsonable(cfg.to_dict())
    if latest is not None:
        saved = manager.read_state(latest)
        if saved.get("config") != config_dict or saved.get("seed") != seed:
            raise UsageError(
                f"{logdir} holds a checkpoint of a different run (config or seed differ); "
                "resume with the same command, use a new --logdir, or pass --restart"
            )

    keras.utils.set_random_seed(seed)
    _set_precision(mixed_precision)
    tf_strategy = setup_strategy(strategy)
    replicas = tf_strategy.num_replicas_in_sync if tf_strategy is not None else _jax_devices(strategy)
    strategy = "mirrored" if tf_strategy is not None else strategy
    if cfg.batch_size % replicas:
        raise UsageError(
            f"--strategy {strategy}: the batch of {cfg.batch_size} does not split evenly over {replicas} devices"
        )
    writer = summaries.SummaryWriter(logdir)
    tracker = {"step": 0}
    recall_ks = cfg.resolved_recall_ks()

    scope = tf_strategy.scope() if tf_strategy is not None else _null_scope()
    with scope:
        model = build_model(cfg, train_source, seed)
        context = methods.TrainingContext(
            config=cfg, train_source=train_source, model=model, seed=seed, logdir=logdir,
            summary_writer=writer, global_step=lambda: tracker["step"], strategy=tf_strategy,
        )  # fmt: skip
        plan = methods.build_plan(cfg.method, context)
        optimizer = build_optimizer(cfg)
        loss, metrics = plan.loss, list(plan.metrics)
        if tf_strategy is not None:
            loss, metrics = GlobalBatchLoss(loss), [GlobalBatchMetric(m) for m in metrics]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics or None)
        optimizer.build(model.trainable_variables)

    state = {"history": [], "train_seconds": 0.0}
    resumers = []
    if latest is not None:
        # Callback state (κ controller, mined triplets) and mid-epoch metric sums come back too.
        state = manager.restore(latest, model, optimizer, callbacks=plan.callbacks)
        resumers = [manager.epoch_metrics_resumer(latest, state["step"], plan.steps_per_epoch)]
        if verbose:
            print(f"resumed from {latest} (step {state['step']})", flush=True)
    step0 = int(state.get("step", 0))
    tracker["step"] = step0
    spe = plan.steps_per_epoch
    total = total_steps(cfg, spe)
    results_file = os.path.join(logdir, "results.json")
    if step0 >= total and os.path.exists(results_file):
        writer.close()
        with open(results_file) as f:
            if verbose:
                print(f"{logdir} is finished ({total} steps); results in {results_file}", flush=True)
            return json.load(f)
    history = list(state.get("history", []))
    train_seconds = float(state.get("train_seconds", 0.0))

    def snapshot():
        return {"config": config_dict, "seed": seed, "history": history,
                "train_seconds": train_seconds + (time.time() - t_start)}  # fmt: skip

    def do_eval(step, final=False):
        metrics, embeddings, labels, meta = evaluate(model, test_source, recall_ks, eval_batch_size, seed)
        for key, value in metrics.items():
            writer.scalar(key, value, step, run="eval")
        history.append({"step": step, **metrics})
        if final:
            write_visuals(writer, logdir, test_source, embeddings, labels, step, nn_queries, nn_k, tsne_points, seed)
        writer.flush()
        if verbose:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith(("recall@", "nmi", "f1", "map")))
            print(f"step {step}: {shown}", flush=True)
        return metrics, meta

    def check_finite(step, logs):
        loss = (logs or {}).get("loss")
        loss = None if loss is None else float(loss)
        if loss is not None and not np.isfinite(loss):
            last = manager.latest()
            raise TrainingDiverged(
                f"the training loss is {loss} at step {step}: training diverged "
                f"({'last checkpoint ' + last + ' is finite' if last else 'no checkpoint was written'}). "
                "Lower --lr, start from pretrained --backbone_weights, or train in float32."
            )

    class StepCallback(keras.callbacks.Callback):
        """Global step, training scalars, periodic evaluation and checkpoints.

        The loss is checked for NaN/inf where it is read anyway (logging) and
        before every checkpoint, so a diverged run stops with
        :class:`TrainingDiverged` and never checkpoints non-finite weights.
        """

        def on_train_batch_end(self, batch, logs=None):
            tracker["step"] += 1
            step = tracker["step"]
            self.batch_keys = set(logs or ())
            logged = log_every and (step % log_every == 0 or step == total)
            saving = cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total
            if logged or saving or step == total:
                check_finite(step, logs)
            if logged:
                for key, value in (logs or {}).items():
                    if np.ndim(value) == 0:
                        writer.scalar(key, float(value), step)
                lr = current_learning_rate(self._model.optimizer, step, tracker.get("lr", cfg.lr))
                tracker["lr"] = lr
                writer.scalar("learning_rate", lr, step)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                self.model  # on JAX, attaching the model syncs the in-flight training state
                do_eval(step)
            if saving:
                manager.save(step, self.model, self.model.optimizer, snapshot(), callbacks=plan.callbacks)

        def on_epoch_end(self, epoch, logs=None):
            # Values the method's callbacks add per epoch (κ, mined share, mining time), at the epoch's last step.
            for key, value in (logs or {}).items():
                if key not in getattr(self, "batch_keys", ()) and np.ndim(value) == 0:
                    writer.scalar(key, float(value), tracker["step"])

    # StepCallback last: it logs and checkpoints after the method's callbacks saw the batch.
    callbacks = resumers + list(plan.callbacks) + [StepCallback()]
    t_start = time.time()
    if step0 == 0 and cfg.eval_every:
        do_eval(0)
    for initial_epoch, epochs, seg_steps, first_step in fit_segments(step0, total, spe):
        data = plan.train_batches(first_step)
        model.fit(data, initial_epoch=initial_epoch, epochs=epochs, steps_per_epoch=seg_steps,
                  callbacks=callbacks, verbose=0, shuffle=False)  # fmt: skip
        if verbose:
            print(f"trained to step {tracker['step']}/{total}", flush=True)
    if tracker["step"] != total:
        raise RuntimeError(f"training stopped at step {tracker['step']} of {total}")

    final_metrics, meta = do_eval(total, final=True)
    train_seconds += time.time() - t_start
    t_start = time.time()
    manager.save(total, model, optimizer, snapshot(), callbacks=plan.callbacks)
    results = {
        "config": config_dict,
        "method": cfg.method,
        "dataset": cfg.dataset,
        "seed": seed,
        "steps": total,
        "steps_per_epoch": spe,
        "backend": keras.backend.backend(),
        "strategy": strategy,
        "mixed_precision": mixed_precision,
        "metrics": final_metrics,
        "paper_results": dict(cfg.paper_results),
        "evaluation": meta,
        "history": history,
        "train_seconds": train_seconds,
    }
    with open(results_file, "w") as f:
        json.dump(_jsonable(results), f, indent=1)
    table = results_table(cfg, final_metrics, recall_ks)
    with open(os.path.join(logdir, "results.md"), "w") as f:
        f.write(table)
    writer.close()
    if verbose:
        print(table, flush=True)
    return results


def _jax_devices(strategy):
    if strategy != "mirrored":
        return 1
    import keras

    distribution = keras.distribution.distribution()
    return len(distribution.device_mesh.devices.flatten()) if distribution is not None else 1


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- CLI


def given_flags(flag_values=FLAGS):
    names = ("config", "dataset", "method", "batch_size", "steps", "epochs", "loss_kwargs", "method_kwargs")
    names = names + _CONFIG_FIELDS
    return {n: flag_values[n].value for n in names if flag_values[n].present}


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected positional arguments: {' '.join(argv[1:])}")
    from experiments import configs

    if FLAGS.list_configs:
        for name in configs.list_configs():
            c = configs.get_config(name)
            print(f"{name:28s} {c.paper:12s} {c.table:8s} {c.row}")
        return 0
    if not FLAGS.logdir:
        raise UsageError("--logdir is required (the run directory for checkpoints, TensorBoard and results)")
    cfg = resolve_config(given_flags())
    if cfg.dataset == "digits":
        train_source, test_source = digits_sources()
    else:
        train_source, test_source = image_sources(cfg, FLAGS.data_root)
    run_training(
        cfg, train_source, test_source, FLAGS.logdir, seed=FLAGS.seed, strategy=FLAGS.strategy,
        mixed_precision=FLAGS.mixed_precision, log_every=FLAGS.log_every, eval_batch_size=FLAGS.eval_batch_size,
        nn_queries=FLAGS.nn_queries, nn_k=FLAGS.nn_k, tsne_points=FLAGS.tsne_points, restart=FLAGS.restart,
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
        except TrainingDiverged as err:
            print(f"train.py: {err}", file=sys.stderr)
            sys.exit(3)

    app.run(_main)


import numpy as np  # noqa: E402  (after the flag definitions, keeps --help fast to read)

if __name__ == "__main__":
    run_main()
