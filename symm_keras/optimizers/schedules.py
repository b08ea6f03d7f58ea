"""Learning-rate schedules of the papers' training recipes (``keras.optimizers.schedules``).

:class:`StaircaseDecay` is TF1's ``tf.train.exponential_decay(...,
staircase=True)`` with an optional stop step, as the released Symm code
builds it (clovaai/symmetrical-synthesis ``utils.configure_learning_rate``
and the ``decay_stop_steps`` / ``decay_stop_value`` flags of ``train.py``)::

    lr(s) = initial · rate^⌊s / decay_steps⌋      for s < stop_step
    lr(s) = stop_value                            for s ≥ stop_step

``s`` is the optimizer's ``iterations`` (updates already applied), the value
TF1's ``global_step`` has when the update uses the learning rate, so a run
resumed from a checkpoint continues the schedule where it stopped. The README
command (``--learning_rate=0.0001 --decay_steps=5000 --decay_ratio=0.5
--decay_stop_steps=15000 --decay_stop_value=0.00001``) gives 1e-4 for steps
0–4,999, 5e-5 for 5,000–9,999, 2.5e-5 for 10,000–14,999 and 1e-5 from 15,000
(the stop value replaces the decayed one; it is not a minimum).

Smart Mining (Harwood et al. 2017, Sec. 4: "0.1 ... halved every 3 epochs")
is the same schedule with ``decay_steps = 3 · steps_per_epoch`` and rate 0.5:
:func:`every_epochs`.
"""

import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="symm_keras")


@register
class StaircaseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``initial · rate^⌊step / decay_steps⌋``, then ``stop_value`` from ``stop_step`` on.

    Args:
        initial_learning_rate: learning rate at step 0.
        decay_steps: steps between two decays (> 0).
        decay_rate: factor applied every ``decay_steps`` (> 0).
        stop_step: first step that uses ``stop_value`` (``None``: never).
        stop_value: learning rate from ``stop_step`` on (needed with ``stop_step``).
        name: name of the schedule.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, stop_step=None, stop_value=None,
                 name="staircase_decay"):  # fmt: skip
        super().__init__()
        if not float(initial_learning_rate) > 0:
            raise ValueError(f"initial_learning_rate must be > 0, got {initial_learning_rate!r}")
        if not (int(decay_steps) == decay_steps and decay_steps > 0):
            raise ValueError(f"decay_steps must be a positive integer, got {decay_steps!r}")
        if not float(decay_rate) > 0:
            raise ValueError(f"decay_rate must be > 0, got {decay_rate!r}")
        if (stop_step is None) != (stop_value is None):
            raise ValueError(f"give stop_step and stop_value together, got stop_step={stop_step!r}, "
                             f"stop_value={stop_value!r}")  # fmt: skip
        if stop_step is not None and not (int(stop_step) == stop_step and stop_step >= 0 and stop_value > 0):
            raise ValueError(f"stop_step must be an integer >= 0 and stop_value > 0, got {stop_step!r}, {stop_value!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.stop_step = None if stop_step is None else int(stop_step)
        self.stop_value = None if stop_value is None else float(stop_value)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        exponent = ops.floor(ops.divide(step, float(self.decay_steps)))
        lr = ops.multiply(self.initial_learning_rate, ops.power(self.decay_rate, exponent))
        if self.stop_step is not None:
            lr = ops.where(ops.less(step, float(self.stop_step)), lr, self.stop_value)
        return ops.cast(lr, "float32")

    def value_at(self, step):
        """The learning rate at an integer ``step``, computed in Python (for plans and logs)."""
        if self.stop_step is not None and step >= self.stop_step:
            return self.stop_value
        return self.initial_learning_rate * self.decay_rate ** (int(step) // self.decay_steps)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "stop_step": self.stop_step,
            "stop_value": self.stop_value,
            "name": self.name,
        }


def every_epochs(initial_learning_rate, epochs, steps_per_epoch, decay_rate=0.5):
    """:class:`StaircaseDecay` by ``decay_rate`` every ``epochs`` epochs (Smart Mining: 0.1, 3, ×0.5)."""
    if not (int(steps_per_epoch) == steps_per_epoch and steps_per_epoch > 0):
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    return StaircaseDecay(initial_learning_rate, int(epochs) * int(steps_per_epoch), decay_rate,
                          name=f"every_{epochs}_epochs")  # fmt: skip


class KappaSchedule:
    """A hand schedule of Smart Mining's κ (Eq. 6): start larger, relax gradually.

    Harwood et al. 2017, Sec. 3: "the best results are achieved by beginning
    training with a larger value for κ and then gradually relaxing this
    constraint"; the paper gives no rule. This one (our choice) holds
    ``initial`` for ``every_epochs`` epochs from ``start_epoch`` (the first mined
    epoch), then multiplies by ``rate`` every ``every_epochs`` epochs, never
    below ``minimum``::

        κ(e) = max(minimum, initial · rate^⌊max(0, e − start_epoch) / every_epochs⌋)

    It has the ``kappa_for_epoch`` of ``symm_keras.callbacks.AdaptiveKappa``, so
    ``SmartMining(kappa=KappaSchedule(...))`` uses it.
    """

    def __init__(self, initial, every_epochs=3, rate=0.5, minimum=1.0, start_epoch=2):
        if not (initial > 0 and 0 < rate <= 1 and 0 < minimum and every_epochs >= 1 and start_epoch >= 0):
            raise ValueError(f"KappaSchedule needs initial > 0, 0 < rate <= 1, minimum > 0, every_epochs >= 1, "
                             f"start_epoch >= 0; got {initial}, {rate}, {minimum}, {every_epochs}, {start_epoch}")
        self.initial, self.every_epochs, self.rate = float(initial), int(every_epochs), float(rate)
        self.minimum, self.start_epoch = float(minimum), int(start_epoch)

    def kappa_for_epoch(self, epoch):
        steps = max(0, int(epoch) - self.start_epoch) // self.every_epochs
        return max(self.minimum, self.initial * self.rate**steps)

    def get_config(self):
        return {"initial": self.initial, "every_epochs": self.every_epochs, "rate": self.rate,
                "minimum": self.minimum, "start_epoch": self.start_epoch}  # fmt: skip
