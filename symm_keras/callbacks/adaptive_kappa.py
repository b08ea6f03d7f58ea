"""Adaptive κ controller of Smart Mining (Harwood et al., ICCV 2017, Sec. 3.2.4).

The training error ``e`` of an epoch is the share of its triplets with a
non-zero loss (2) (:class:`symm_keras.losses.smart_mining.TripletTrainingError`).
A linear model ``κ = α·e + β`` (eq. 7) is fitted by least squares to the most
recent ``(e, κ)`` pairs, and the next epoch mines with ``κ = α·e_t + β``
(eq. 8) for a constant target error ``e_t`` (paper: 50–75 %). Control starts
at the third epoch (``start_epoch = 2``, 0-based; the first two epochs use
random triplets).

Choices where the paper is open:

* *Initial estimate*: the first controlled epoch mines with ``initial_kappa``;
  until two pairs with different errors exist, the slope is the prior
  ``initial_slope`` (negative: a larger κ excludes more negatives, giving
  easier triplets and a lower error) through the latest pair.
* *Sign guard*: a fitted slope ``α ≥ 0`` contradicts that relation (noise);
  the prior slope is used instead.
* *Bounds*: κ stays in ``[min_kappa, max_kappa]`` and changes by at most a
  factor ``max_step`` per epoch, so it cannot run away.

Resume. The controller's state (the ``(e, κ)`` history, the κ chosen per
epoch, the current fit and the running error of the epoch in progress) is
saved with every training checkpoint through :meth:`checkpoint_state` and
put back by :meth:`restore_checkpoint_state` (``experiments/checkpoints.py``),
so a run killed and resumed mines with the same κ sequence as an
uninterrupted one. A checkpoint written after the last batch of epoch ``e``
but before ``on_epoch_end(e)`` still carries epoch ``e``'s error (the running
value of its last batch); the pair is recorded when the next epoch starts.
"""

import math

import keras
import numpy as np


class AdaptiveKappa(keras.callbacks.Callback):
    """Sets κ for each epoch from the previous epochs' training errors.

    Args:
        target_error: target training error ``e_t`` (paper: 0.5–0.75).
        initial_kappa: κ of the first controlled epoch.
        start_epoch: first controlled epoch (0-based; paper: the third, 2).
        history: number of recent ``(error, κ)`` pairs in the fit.
        initial_slope: prior ``α`` (< 0) used until the fit is possible.
        min_kappa, max_kappa: bounds on κ.
        max_step: largest factor κ may change by from one epoch to the next.
        error_key: the ``logs`` entry holding the epoch's training error.

    Logs ``kappa`` (the κ used in the epoch) at every epoch end; the smart
    mining callback reads :meth:`kappa_for_epoch`.
    """

    def __init__(self, target_error=0.5, initial_kappa=1.0, start_epoch=2, history=5, initial_slope=-2.0,
                 min_kappa=0.05, max_kappa=64.0, max_step=2.0, error_key="training_error"):
        super().__init__()
        if not 0.0 < target_error < 1.0:
            raise ValueError(f"target_error must be in (0, 1), got {target_error}.")
        if not 0 < min_kappa <= initial_kappa <= max_kappa:
            raise ValueError(
                f"need 0 < min_kappa <= initial_kappa <= max_kappa, got {min_kappa}, {initial_kappa}, {max_kappa}."
            )
        if initial_slope >= 0:
            raise ValueError(f"initial_slope must be negative, got {initial_slope}.")
        if max_step <= 1.0:
            raise ValueError(f"max_step must be > 1, got {max_step}.")
        if int(history) < 2:
            raise ValueError(f"history must be >= 2 pairs, got {history}.")
        self.target_error = float(target_error)
        self.initial_kappa = float(initial_kappa)
        self.start_epoch = int(start_epoch)
        self.history = int(history)
        self.initial_slope = float(initial_slope)
        self.min_kappa, self.max_kappa = float(min_kappa), float(max_kappa)
        self.max_step = float(max_step)
        self.error_key = error_key
        self.pairs = {}  # epoch -> (training error, κ used)
        self.kappas = {}  # epoch -> κ chosen for it
        self.alpha, self.beta = self.initial_slope, None
        self.running = None  # (epoch, running training error) of the epoch in progress

    #: key of this callback's entry in a training checkpoint.
    checkpoint_key = "adaptive_kappa"

    def checkpoint_state(self):
        """JSON-able state for a training checkpoint (see the module docstring)."""
        return {
            "pairs": [[e, err, k] for e, (err, k) in sorted(self.pairs.items())],
            "kappas": [[e, k] for e, k in sorted(self.kappas.items())],
            "alpha": self.alpha,
            "beta": self.beta,
            "running": None if self.running is None else [self.running[0], float(self.running[1])],
        }

    def restore_checkpoint_state(self, state):
        """Put back a :meth:`checkpoint_state` (a resumed run continues the same κ sequence)."""
        try:
            pairs = {int(e): (float(err), float(k)) for e, err, k in state["pairs"]}
            kappas = {int(e): float(k) for e, k in state["kappas"]}
            running = state.get("running")
            running = None if running is None else (int(running[0]), float(running[1]))
            alpha = float(state["alpha"])
            beta = None if state["beta"] is None else float(state["beta"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"AdaptiveKappa: unreadable checkpoint state ({err!r}): {state!r}") from None
        self.pairs, self.kappas, self.running = pairs, kappas, running
        self.alpha, self.beta = alpha, beta

    def _record_finished_epoch(self, epoch):
        """Record the running error of an epoch before ``epoch`` that ended without ``on_epoch_end``."""
        if self.running is None:
            return
        finished, error = self.running
        if finished < epoch and finished not in self.pairs and finished >= self.start_epoch:
            self.record(finished, float(error))

    def fit_line(self, pairs):
        """Least-squares ``(α, β)`` of ``κ = α e + β`` over ``[(e, κ), ...]`` with the guards above."""
        errors = np.array([p[0] for p in pairs], np.float64)
        kappas = np.array([p[1] for p in pairs], np.float64)
        alpha = self.initial_slope
        if len(pairs) >= 2 and np.ptp(errors) > 1e-6:
            design = np.stack([errors, np.ones_like(errors)], axis=1)
            (fit_alpha, _), *_ = np.linalg.lstsq(design, kappas, rcond=None)
            if fit_alpha < 0 and math.isfinite(fit_alpha):
                alpha = float(fit_alpha)
                return alpha, float(np.mean(kappas) - alpha * np.mean(errors))
        # Prior slope through the latest pair.
        return alpha, float(kappas[-1] - alpha * errors[-1])

    def kappa_for_epoch(self, epoch):
        """κ for ``epoch`` (computed once per epoch; ``initial_kappa`` before any feedback)."""
        epoch = int(epoch)
        if epoch in self.kappas:
            return self.kappas[epoch]
        self._record_finished_epoch(epoch)
        previous = [e for e in sorted(self.pairs) if e < epoch][-self.history:]
        if epoch < self.start_epoch or not previous:
            kappa = self.initial_kappa
        else:
            self.alpha, self.beta = self.fit_line([self.pairs[e] for e in previous])
            proposal = self.alpha * self.target_error + self.beta
            last = self.pairs[previous[-1]][1]
            proposal = min(max(proposal, last / self.max_step), last * self.max_step)
            kappa = float(min(max(proposal, self.min_kappa), self.max_kappa))
        self.kappas[epoch] = kappa
        return kappa

    def record(self, epoch, training_error):
        """Store the training error measured in ``epoch`` with the κ it used."""
        if not 0.0 <= training_error <= 1.0:
            raise ValueError(f"training error must be a share in [0, 1], got {training_error}.")
        epoch = int(epoch)
        if epoch >= self.start_epoch:
            self.pairs[epoch] = (float(training_error), self.kappa_for_epoch(epoch))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self.kappa_for_epoch(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if logs is not None and self.error_key in logs and getattr(self, "_epoch", None) is not None:
            # Kept as given (no host sync per step); converted when saved or used.
            self.running = (self._epoch, logs[self.error_key])

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        kappa = self.kappa_for_epoch(epoch)
        if self.error_key not in logs:
            raise KeyError(
                f"AdaptiveKappa needs the epoch's training error in logs[{self.error_key!r}]; compile the "
                "model with metrics=[symm_keras.losses.smart_mining.TripletTrainingError()]."
            )
        self.record(epoch, float(logs[self.error_key]))
        logs["kappa"] = kappa
