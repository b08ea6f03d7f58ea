"""Epoch-level Smart Mining callback (Harwood et al., ICCV 2017, Sec. 3.2).

At the start of every epoch: embed the whole training set (batched, with the
model being trained, on the accelerator when there is one), build each
sample's neighbour list (:func:`symm_keras.neighbors.neighbour_lists`,
``exact`` by default or ``fanng`` as in the paper), select the epoch's
triplets with Algorithm 1 at the current κ and the mined share, and hand them
to the data feed (any object with ``set_triplets(triplets, epoch)``, e.g.
``symm_keras.data.TripletFeed``). The first ``random_epochs`` epochs (paper: 2)
use random triplets only and skip the embedding.

Logged into the epoch's ``logs`` (and so to TensorBoard): ``kappa``,
``mined_share`` (share of the epoch's triplets with a mined negative) and
``mining_seconds`` (embedding + neighbours + selection).

The triplets depend only on the weights at the start of the epoch, the epoch
and ``seed``. :meth:`prepare_epoch` mines an epoch's triplets and hands them
to the feed; ``on_epoch_begin`` calls it, and a training loop that builds each
epoch's batch stream itself calls it first (before the stream exists, so a
feed never has to wait for triplets: ``experiments/methods/smart_mining.py``),
then ``on_epoch_begin`` keeps them. A run resumed mid-epoch cannot mine that
epoch again (its weights have moved on), so the epoch's triplets are saved
with every training checkpoint (:meth:`checkpoint_state`,
``experiments/checkpoints.py``) and handed back to the feed by
:meth:`restore_checkpoint_state`; :meth:`prepare_epoch` of that epoch then
keeps them. Restore after the κ controller (callback order), which it asks for κ.
"""

import time

import keras
import numpy as np

from symm_keras.neighbors import neighbour_lists
from symm_keras.mining.triplet_selection import EpochTriplets, epoch_triplets, random_triplets


class SmartMining(keras.callbacks.Callback):
    """Mine the epoch's triplets at ``on_epoch_begin`` and pass them to ``feed``.

    Args:
        inputs: the training set in label order: a numpy array / tensor /
            ``tf.data.Dataset`` of model inputs (embedded with
            ``model.predict``), or a callable ``embed(model) -> (N, D)``.
        labels: ``(N,)`` integer labels of those samples.
        feed: object with ``set_triplets(triplets, epoch)``.
        steps_per_epoch: batches per epoch.
        triplets_per_batch: triplets per batch.
        kappa: a fixed κ, or an :class:`AdaptiveKappa` (its ``kappa_for_epoch``).
        mined_share: share of each batch from Algorithm 1 (paper: 0.5–1.0).
        random_epochs: leading epochs with random triplets only (paper: 2).
        k: neighbour-list length.
        source: neighbour source (``exact``, ``fanng``, ``faiss``, ``pynndescent``).
        source_options: extra options of the source.
        embed_batch_size: batch size of the embedding pass.
        seed: seed of the random parts (changes with the epoch).
    """

    def __init__(self, inputs, labels, feed, steps_per_epoch, triplets_per_batch, kappa=1.0, mined_share=1.0,
                 random_epochs=2, k=30, source="exact", source_options=None, embed_batch_size=256, seed=0):
        super().__init__()
        self.inputs = inputs
        self.labels = np.asarray(labels).reshape(-1)
        if not hasattr(feed, "set_triplets"):
            raise TypeError("feed must have a set_triplets(triplets, epoch) method (e.g. symm_keras.data.TripletFeed).")
        self.feed = feed
        self.steps_per_epoch = int(steps_per_epoch)
        self.triplets_per_batch = int(triplets_per_batch)
        if not 0.0 <= float(mined_share) <= 1.0:
            raise ValueError(f"mined_share must be in [0, 1], got {mined_share}.")
        self.kappa = kappa
        self.mined_share = float(mined_share)
        self.random_epochs = int(random_epochs)
        self.k = int(k)
        self.source = source
        self.source_options = dict(source_options or {})
        self.embed_batch_size = int(embed_batch_size)
        self.seed = int(seed)
        self.last = {}
        self.epoch = None  # epoch whose triplets were handed to the feed last
        self.triplets = None
        self.position = 0  # batches of that epoch trained so far

    #: key of this callback's entry in a training checkpoint.
    checkpoint_key = "smart_mining"

    def checkpoint_state(self):
        """The current epoch's triplets and logged values (``triplets`` is a numpy array)."""
        if self.epoch is None:
            return {"epoch": None}
        return {"epoch": int(self.epoch), "position": int(self.position), "triplets": np.asarray(self.triplets),
                **self.last}  # fmt: skip

    def restore_checkpoint_state(self, state):
        """Take back :meth:`checkpoint_state`: epoch ``state["epoch"]`` resumes with its saved triplets."""
        if state.get("epoch") is None:
            return
        triplets = np.asarray(state.get("triplets"))
        if triplets.ndim != 2 or triplets.shape[1] != 3:
            raise ValueError(f"SmartMining: checkpoint state holds triplets of shape {triplets.shape}, expected (n, 3).")
        if triplets.size and triplets.max() >= self.labels.size:
            raise ValueError(
                f"SmartMining: checkpoint triplets index row {int(triplets.max())} but the training set has "
                f"{self.labels.size} rows (a checkpoint of another dataset?)."
            )
        logged = {k: state[k] for k in ("kappa", "mined_share", "mining_seconds") if k in state}
        self._hand_over(int(state["epoch"]), triplets, int(state.get("position", 0)), logged)

    def current_kappa(self, epoch):
        if hasattr(self.kappa, "kappa_for_epoch"):
            return float(self.kappa.kappa_for_epoch(epoch))
        return float(self.kappa)

    def embed(self):
        if callable(self.inputs):
            embeddings = self.inputs(self.model)
        else:
            embeddings = self.model.predict(self.inputs, batch_size=self.embed_batch_size, verbose=0)
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[0] != self.labels.size:
            raise ValueError(
                f"the embedding pass gave shape {embeddings.shape}; expected ({self.labels.size}, dim), one row "
                "per training label in the same order."
            )
        return embeddings

    def mine(self, epoch):
        """The :class:`EpochTriplets` of ``epoch`` (random during the first epochs)."""
        seed = (self.seed, int(epoch))
        count = self.steps_per_epoch * self.triplets_per_batch
        kappa = self.current_kappa(epoch)
        if epoch < self.random_epochs or self.mined_share == 0.0:
            rows = random_triplets(self.labels, count, seed=np.random.default_rng(seed))
            return EpochTriplets(rows, np.zeros(count, bool), np.zeros(count, bool)), kappa
        embeddings = self.embed()
        idx, dist = neighbour_lists(embeddings, self.k, source=self.source,
                                    seed=self.seed + int(epoch), **self.source_options)
        epoch_rows = epoch_triplets(idx, dist, self.labels, kappa, self.steps_per_epoch,
                                    self.triplets_per_batch, mined_share=self.mined_share,
                                    seed=np.random.default_rng(seed))
        return epoch_rows, kappa

    def prepare_epoch(self, epoch):
        """Hand ``epoch``'s triplets to the feed: the current ones when ``epoch`` is
        under way (prepared already, or restored mid-epoch), else mined now."""
        if self.epoch != int(epoch) or self.position >= self.steps_per_epoch:
            self._mine_and_hand_over(int(epoch))

    def _hand_over(self, epoch, triplets, position, logged):
        """Make ``epoch``'s triplets the current ones and give them to the feed."""
        self.feed.set_triplets(triplets, epoch=epoch)
        self.epoch, self.triplets, self.position, self.last = int(epoch), triplets, int(position), dict(logged)

    def _mine_and_hand_over(self, epoch):
        start = time.perf_counter()
        mined, kappa = self.mine(epoch)
        logged = {"kappa": kappa, "mined_share": mined.mined_share, "mining_seconds": time.perf_counter() - start}
        self._hand_over(epoch, mined.triplets, 0, logged)

    def on_epoch_begin(self, epoch, logs=None):
        self.prepare_epoch(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.position += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.last)
