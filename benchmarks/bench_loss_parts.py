"""Cost of logging loss parts: compiled ``model.fit`` step time with and without
``symm_keras.metrics.LossPart`` metrics, side by side in one run.

A Dense head (``--features`` → ``--dim``) on fixed random inputs, P×2 batches
of ``--batch`` rows, trained with the loss alone, then with the loss +
``loss_part_metrics(loss)``. Prints ms/step of each and the ratio (parts /
loss alone, median of alternating rounds); the loss path itself is unchanged (the parts are only computed by
the metrics). Run on the active Keras backend::

    .venv/bin/python benchmarks/bench_loss_parts.py
    KERAS_BACKEND=jax .venv/bin/python benchmarks/bench_loss_parts.py
"""

import argparse
import time

import keras
import numpy as np

from symm_keras.losses import NPairLoss, SymmNPairLoss, SymmTripletLoss, TripletLoss
from symm_keras.metrics import loss_part_metrics

LOSSES = {
    "npair": NPairLoss,
    "symm_npair": SymmNPairLoss,
    "triplet": TripletLoss,
    "symm_triplet": SymmTripletLoss,
}


def compiled_model(loss, metrics, x, y, batch, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(ARGS.dim)])
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, metrics=metrics or None)
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)  # compile + warm-up
    return model


def epoch_ms(model, x, y, batch):
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return (time.perf_counter() - start) / (len(x) // batch) * 1e3


def step_times(loss, metrics, x, y, batch, epochs):
    """Median ms/step of the loss alone and with ``metrics``, and the median of
    the per-round ratios; the two models alternate epoch by epoch (noisy machines)."""
    alone = compiled_model(loss, [], x, y, batch)
    with_parts = compiled_model(loss, metrics, x, y, batch)
    a, p = [], []
    for _ in range(epochs):
        a.append(epoch_ms(alone, x, y, batch))
        p.append(epoch_ms(with_parts, x, y, batch))
    return float(np.median(a)), float(np.median(p)), float(np.median(np.array(p) / np.array(a)))


def main():
    rng = np.random.default_rng(0)
    classes = ARGS.batch // 2
    y = np.concatenate([rng.permutation(np.repeat(np.arange(classes), 2)) + 1000 * s for s in range(ARGS.steps)])
    x = rng.normal(size=(len(y), ARGS.features)).astype("float32")
    print(f"backend={keras.backend.backend()} batch={ARGS.batch} features={ARGS.features} dim={ARGS.dim} "
          f"steps/epoch={ARGS.steps} timed epochs={ARGS.epochs}")  # fmt: skip
    print(f"{'loss':14s} {'parts logged':40s} {'alone ms':>9s} {'+parts ms':>10s} {'ratio':>6s}")
    for name in ARGS.losses.split(","):
        loss = LOSSES[name]()
        metrics = loss_part_metrics(loss)
        alone, with_parts, ratio = step_times(loss, metrics, x, y, ARGS.batch, ARGS.epochs)
        names = ",".join(m.name for m in metrics)
        print(f"{name:14s} {names:40s} {alone:9.2f} {with_parts:10.2f} {ratio:6.2f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--losses", default="npair,symm_npair,triplet,symm_triplet")
    ARGS = parser.parse_args()
    main()
