"""SmartMining callback: epoch mining into a triplet feed, logging, and a toy training run
where Triplet + Mining + Global beats random triplets on held-out Recall@1."""

import keras
import numpy as np
import pytest

from symm_keras.callbacks.adaptive_kappa import AdaptiveKappa
from symm_keras.callbacks.smart_mining import SmartMining
from symm_keras.losses.smart_mining import SmartMiningLoss, TripletTrainingError
from symm_keras.neighbors import exact_knn
from symm_keras.mining.triplet_selection import random_triplets


class ArrayTripletFeed(keras.utils.PyDataset):
    """In-memory triplet feed with the [anchors; positives; negatives] batch layout."""

    def __init__(self, x, y, steps, triplets_per_batch):
        super().__init__()
        self.x, self.y, self.steps, self.t = x, y, steps, triplets_per_batch
        self.epochs = []
        # Keras reads one batch before the first epoch to infer shapes.
        self.triplets = random_triplets(y, steps * triplets_per_batch, seed=0) if y is not None else None

    def set_triplets(self, triplets, epoch):
        self.triplets = np.asarray(triplets)
        self.epochs.append(epoch)

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        rows = self.triplets[np.arange(i * self.t, (i + 1) * self.t) % len(self.triplets)]
        idx = rows.T.reshape(-1)
        return self.x[idx], self.y[idx]


def sibling_classes(groups, per_class, seed):
    """Pairs of sibling classes: far apart groups (dims 0–3), siblings split on dims 4–7,
    dims 8–15 class-free nuisance. Random negatives are mostly from other groups (easy)."""
    rng = np.random.default_rng(seed)
    n_classes = 2 * groups
    labels = np.repeat(np.arange(n_classes), per_class)
    coarse = 3.0 * rng.normal(size=(groups, 4))[labels // 2]
    fine = 0.6 * rng.normal(size=(n_classes, 4))[labels]
    signal = np.concatenate([coarse, fine], axis=1) + 0.1 * rng.normal(size=(len(labels), 8))
    nuisance = 0.6 * rng.normal(size=(len(labels), 8))
    return np.concatenate([signal, nuisance], axis=1).astype("float32"), labels


def recall_at_1(model, x, y):
    emb = model.predict(x, verbose=0)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    idx, _ = exact_knn(emb, 1, metric="squared_euclidean")
    return float(np.mean(y[idx[:, 0]] == y))


def train(mined_share, epochs, steps, t=20, seed=0, kappa=1.0):
    x, y = sibling_classes(30, 10, seed=1)
    x_test, y_test = sibling_classes(15, 10, seed=2)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=SmartMiningLoss(), metrics=[TripletTrainingError()])
    feed = ArrayTripletFeed(x, y, steps, t)
    miner = SmartMining(x, y, feed, steps_per_epoch=steps, triplets_per_batch=t, kappa=kappa,
                        mined_share=mined_share, random_epochs=2, k=20, seed=seed)
    history = model.fit(feed, epochs=epochs, verbose=0, callbacks=[miner])
    return recall_at_1(model, x_test, y_test), history, feed


def test_mining_beats_random_triplets_at_the_same_number_of_steps():
    mined, history, feed = train(mined_share=1.0, epochs=6, steps=15)
    random, random_history, _ = train(mined_share=0.0, epochs=6, steps=15)
    assert feed.epochs == list(range(6))
    logged = history.history
    assert logged["mined_share"][:2] == [0.0, 0.0] and min(logged["mined_share"][2:]) > 0.5
    assert all(s >= 0 for s in logged["mining_seconds"]) and logged["kappa"] == [1.0] * 6
    # Mined triplets are harder: a higher training error than random ones.
    assert np.mean(logged["training_error"][2:]) > np.mean(random_history.history["training_error"][2:])
    assert mined > random + 0.05, (mined, random)


@pytest.mark.slow
def test_mining_with_adaptive_kappa_beats_random_over_a_longer_run():
    controller = AdaptiveKappa(target_error=0.5)
    mined, history, _ = train(mined_share=1.0, epochs=12, steps=20, kappa=controller)
    random, _, _ = train(mined_share=0.0, epochs=12, steps=20)
    assert mined > random
    assert all(0.05 <= k <= 64 for k in history.history["kappa"])


def test_prepare_epoch_mines_once_and_on_epoch_begin_keeps_the_triplets():
    """A training loop prepares the epoch before building its batches; fit's
    on_epoch_begin of that epoch then keeps them (no second mining)."""
    x, y = sibling_classes(5, 4, seed=0)
    feed = ArrayTripletFeed(x, y, 3, 4)
    calls = []

    def embed(model):
        calls.append(1)
        return x

    miner = SmartMining(embed, y, feed, steps_per_epoch=3, triplets_per_batch=4, random_epochs=1, k=5)
    miner.prepare_epoch(0)
    assert feed.epochs == [0] and not calls  # a random epoch needs no embedding
    np.testing.assert_array_equal(feed.triplets, miner.mine(0)[0].triplets)
    miner.on_epoch_begin(0)
    assert feed.epochs == [0]
    miner.prepare_epoch(1)
    miner.on_epoch_begin(1)
    assert feed.epochs == [0, 1] and calls == [1]
    for _ in range(3):
        miner.on_train_batch_end(0)
    miner.prepare_epoch(1)  # an epoch that ran to its end is mined afresh
    assert feed.epochs == [0, 1, 1] and calls == [1, 1]


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="set_triplets"):
        SmartMining(np.zeros((4, 2)), np.arange(4), object(), 1, 1)
    feed = ArrayTripletFeed(None, None, 1, 1)
    miner = SmartMining(lambda model: np.zeros((3, 2)), np.array([0, 0, 1, 1]), feed, 1, 2, random_epochs=0)
    with pytest.raises(ValueError, match="embedding pass"):
        miner.on_epoch_begin(0)


def test_checkpoint_state_restores_the_epoch_triplets_without_mining():
    """Restoring a mid-epoch state hands the saved triplets to the feed and
    on_epoch_begin of that epoch reuses them (mining would see moved weights)."""
    labels = np.repeat(np.arange(4), 5)
    x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
    feed = ArrayTripletFeed(x, labels, steps=4, triplets_per_batch=3)
    calls = []

    def embed(model):
        calls.append(1)
        return x

    miner = SmartMining(embed, labels, feed, steps_per_epoch=4, triplets_per_batch=3, random_epochs=0, k=5)
    saved = random_triplets(labels, 12, seed=7)
    miner.restore_checkpoint_state({"epoch": 2, "position": 1, "triplets": saved, "kappa": 1.0,
                                    "mined_share": 1.0, "mining_seconds": 0.1})  # fmt: skip
    assert feed.epochs == [2] and np.array_equal(feed.triplets, saved)
    miner.on_epoch_begin(2)
    assert not calls and np.array_equal(miner.triplets, saved) and miner.position == 1
    state = miner.checkpoint_state()
    assert state["epoch"] == 2 and np.array_equal(state["triplets"], saved)
    miner.on_epoch_begin(3)  # the next epoch is mined again
    assert calls == [1] and feed.epochs == [2, 3]
    with pytest.raises(ValueError, match="expected \\(n, 3\\)"):
        miner.restore_checkpoint_state({"epoch": 1, "triplets": np.zeros((4, 2), int)})
    with pytest.raises(ValueError, match="training set has 20 rows"):
        miner.restore_checkpoint_state({"epoch": 1, "triplets": np.full((4, 3), 25)})
