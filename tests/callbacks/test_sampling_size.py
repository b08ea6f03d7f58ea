"""Sampling-size counter and callback (DAMLRRM Table 6)."""

import keras
import numpy as np
import pytest

from symm_keras.callbacks.sampling_size import SamplingSize, SamplingSizeCounter
from symm_keras.data.samplers import AsymmetricSampler, ClassBalancedSampler


def _labels(classes=10, per_class=6):
    return np.repeat(np.arange(classes), per_class)


def _brute_force(sampler, steps):
    rows = [np.asarray(sampler.batch_rows(s)) for s in range(steps)]
    return len(np.unique(np.concatenate(rows))) if rows else 0


def test_asymmetric_pools_saturate_at_pool_size():
    sampler = AsymmetricSampler(_labels(), classes_per_batch=3, images_per_class=2, seed=1)
    counter = SamplingSizeCounter(sampler)
    lx, ls = sampler.neat_pool_batches, sampler.shuffled_pool_batches
    counter.advance_to(3)
    assert counter.sampling_size == 3 * sampler.batch_size  # no pool entry drawn twice yet
    counter.advance_to(max(lx, ls))
    assert counter.sampling_size == sampler.sampling_size  # N^x + N^s (every pool entry drawn)
    counter.advance_to(5 * sampler.period + 7)
    assert counter.sampling_size == sampler.sampling_size
    assert counter.distinct_images == sampler.distinct_images == _brute_force(sampler, sampler.period)
    assert counter.images_drawn == (5 * sampler.period + 7) * sampler.batch_size


def test_fresh_batches_count_every_draw():
    sampler = ClassBalancedSampler(_labels(), classes_per_batch=4, images_per_class=2, seed=0)
    counter = SamplingSizeCounter(sampler)
    for _ in range(9):
        counter.step()
    assert counter.sampling_size == counter.images_drawn == 9 * 8
    assert counter.distinct_images == _brute_force(sampler, 9)
    assert counter.period is None


def test_resume_and_rewind_replay_the_same_counts():
    sampler = AsymmetricSampler(_labels(), classes_per_batch=3, images_per_class=2, seed=4)
    stepped = SamplingSizeCounter(sampler)
    for _ in range(11):
        stepped.step()
    jumped = SamplingSizeCounter(sampler)
    jumped.advance_to(11)
    assert jumped.result() == stepped.result()
    jumped.advance_to(4)  # rewound (restored an older checkpoint)
    fresh = SamplingSizeCounter(sampler)
    fresh.advance_to(4)
    assert jumped.result() == fresh.result()


def test_bad_input():
    with pytest.raises(TypeError, match="batch_rows"):
        SamplingSizeCounter(object())
    sampler = ClassBalancedSampler(_labels(), 4, 2)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        SamplingSizeCounter(sampler).advance_to(-1)
    with pytest.raises(ValueError, match="start_step"):
        SamplingSize(sampler, start_step=-2)
    with pytest.raises(TypeError, match="global_step"):
        SamplingSize(sampler, global_step=3)


class _Writer:
    def __init__(self):
        self.values = []

    def scalar(self, tag, value, step):
        self.values.append((tag, value, step))


def test_callback_follows_fit_and_resume():
    labels = _labels()
    sampler = AsymmetricSampler(labels, classes_per_batch=3, images_per_class=2, seed=2)
    x = np.random.default_rng(0).normal(size=(len(labels), 4)).astype("float32")
    steps = 5

    def batches(start):
        rows = np.concatenate([sampler.batch_rows(s) for s in range(start, start + steps)])
        return x[rows], labels[rows]

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    writer = _Writer()
    done = {"steps": 0}
    callback = SamplingSize(sampler, global_step=lambda: done["steps"], summary_writer=writer, log_every=2)
    seen = []

    class Collect(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(dict(logs))

    for _ in range(2):  # two fit calls, like a resumed run
        bx, by = batches(done["steps"])
        model.fit(bx, np.zeros((len(by), 2)), batch_size=sampler.batch_size, shuffle=False, verbose=0,
                  callbacks=[callback, Collect()])  # fmt: skip
        done["steps"] += steps
    reference = SamplingSizeCounter(sampler)
    reference.advance_to(2 * steps)
    assert callback.result() == reference.result()
    assert seen[-1]["sampling_size"] == reference.sampling_size
    assert seen[-1]["images_drawn"] == 2 * steps * sampler.batch_size
    assert ("distinct_images", float(reference.distinct_images), 2 * steps) in writer.values
