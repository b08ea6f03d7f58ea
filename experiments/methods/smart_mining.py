"""``--method smart_mining``: Smart Mining (Harwood et al., ICCV 2017).

Before every epoch (the plan's ``prepare_epoch``) the
:class:`symm_keras.callbacks.smart_mining.SmartMining` callback embeds the
training split, builds neighbour lists (``source``: ``fanng`` as in the paper,
or ``exact``), selects triplets with Algorithm 1 and hands them to a triplet
feed (``symm_keras.data.TripletFeed`` for images, an in-memory feed for
arrays); the trainer then builds that epoch's finite batch stream and fits it,
so the stream never runs ahead of the mining (same on TensorFlow and JAX).
Batches are ``[anchors; positives; negatives]``. The loss is
:class:`symm_keras.losses.smart_mining.SmartMiningLoss` built from
``config.loss_kwargs`` (``global_weight=0`` gives the "Triplet + FANNG" row);
the training error metric feeds the optional :class:`AdaptiveKappa`.

``config.method_kwargs`` (defaults in ``DEFAULTS``): ``kappa`` (fixed κ or the
adaptive controller's initial κ), ``adaptive``, ``target_error``,
``mined_share``, ``random_epochs``, ``source``, ``k``, ``triplets_per_batch``,
``lr_halving_epochs`` (the paper halves the learning rate every 3 epochs; a
row with an ``lr_schedule`` does it in the optimizer instead, and a row's
``kappa_schedule`` replaces the fixed κ).
An epoch is ``ceil(N / triplets_per_batch)`` steps (every sample is an anchor
about once).

Logged: ``training_error`` (the controller's input), ``kappa``,
``mined_share``, ``mining_seconds`` and, when the global loss is on, the
loss parts ``smart_mining_ratio_triplet`` + ``smart_mining_global`` (= loss).

Resume: the κ controller's history and the triplets mined at the start of the
current epoch are saved with every checkpoint and restored
(``checkpoint_state`` / ``restore_checkpoint_state`` of ``AdaptiveKappa`` and
``SmartMining``, see ``experiments/checkpoints.py``), so a killed run resumed
with the same command mines with the same κ sequence and triplets as an
uninterrupted one. The epoch counter is the trainer's (``initial_epoch`` of
each epoch's ``fit``), so the random first epochs and the learning-rate
halving follow the global step without saved state.
"""

import math

import numpy as np

from experiments.methods import MethodPlan, register_method

DEFAULTS = {
    "kappa": 4.0,
    "adaptive": False,
    "target_error": 0.5,
    "mined_share": 1.0,
    "random_epochs": 2,
    "source": "fanng",
    "k": 30,
    "triplets_per_batch": 40,
    "lr_halving_epochs": 3,
    "embed_batch_size": 128,
}


class ArrayTripletFeed:
    """Triplet feed over in-memory arrays, batches from ``symm_keras.data.TripletSampler``."""

    def __init__(self, x, labels, triplets_per_batch, steps_per_epoch, seed=0):
        from symm_keras.data import TripletSampler

        self.x, self.labels = x, np.asarray(labels)
        self.sampler = TripletSampler(len(self.labels), triplets_per_batch, steps_per_epoch, seed=seed)

    def set_triplets(self, triplets, epoch):
        self.sampler.set_triplets(triplets, epoch)

    def dataset(self, start_step=0, num_steps=None):
        from experiments.sources import array_batches

        return array_batches(self.x, self.labels, self.sampler.batch_rows, self.sampler.batch_size, start_step,
                             num_steps)  # fmt: skip


def method_options(config):
    unknown = set(config.method_kwargs) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"--method smart_mining: unknown method_kwargs {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    options = dict(DEFAULTS)
    options.update(config.method_kwargs)
    return options


@register_method("smart_mining", l2_normalize=True)
def build_smart_mining(context):
    import keras

    from symm_keras.callbacks.adaptive_kappa import AdaptiveKappa
    from symm_keras.callbacks.smart_mining import SmartMining
    from symm_keras.losses.smart_mining import SmartMiningLoss, TripletTrainingError
    from symm_keras.metrics import loss_part_metrics

    cfg = context.config
    options = method_options(cfg)
    source = context.train_source
    labels = np.asarray(source.labels)
    t = int(options["triplets_per_batch"])
    steps = max(1, math.ceil(len(labels) / t))
    loss = SmartMiningLoss(**cfg.loss_kwargs)
    if source.kind == "arrays":
        feed = ArrayTripletFeed(source.x, labels, t, steps, seed=context.seed)
        inputs = source.x
    else:
        from symm_keras.data import TripletFeed

        feed = TripletFeed(source.index, t, steps, preprocessing=source.preprocessing, seed=context.seed)
        inputs = source.eval_dataset(batch_size=int(options["embed_batch_size"]))
    callbacks = []
    kappa = float(options["kappa"])
    if cfg.kappa_schedule is not None and not options["adaptive"]:
        from experiments.configs import recipes

        kappa = recipes.build_kappa_schedule(cfg)  # the row's hand κ schedule (kappa_for_epoch)
    if options["adaptive"]:
        kappa = AdaptiveKappa(target_error=float(options["target_error"]), initial_kappa=kappa,
                              start_epoch=int(options["random_epochs"]))
        callbacks.append(kappa)
    miner = SmartMining(inputs, labels, feed, steps, t, kappa=kappa, mined_share=float(options["mined_share"]),
                        random_epochs=int(options["random_epochs"]), k=int(options["k"]), source=options["source"],
                        embed_batch_size=int(options["embed_batch_size"]), seed=context.seed)
    miner.set_model(context.model)  # prepare_epoch embeds with it before the epoch's fit
    callbacks.append(miner)
    halving = int(options["lr_halving_epochs"])
    if halving > 0 and cfg.lr_schedule is None:  # a row's lr_schedule halves in the optimizer instead
        base_lr = float(cfg.lr)
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch: base_lr * 0.5 ** (epoch // halving)))
    return MethodPlan(
        train_batches=lambda start_step, num_steps=None: feed.dataset(start_step=start_step, num_steps=num_steps),
        loss=loss,
        steps_per_epoch=steps,
        metrics=[TripletTrainingError(margin=loss.get_config()["triplet_margin"])]
        # valid_share: the share of rows that form a triplet (1 for the miner's batches; see the loss).
        + loss_part_metrics(loss, parts=(("ratio_triplet", "global") if loss.get_config()["global_weight"] else ())
                            + ("valid_share",)),
        callbacks=callbacks,
        prepare_epoch=miner.prepare_epoch,
        batch_layout="triplets",
        description=f"Smart Mining ({options['source']} neighbours, Algorithm 1) with {type(loss).__name__}",
    )
