"""Optimizer pieces of the papers' recipes: learning-rate schedules and coupled L2 weight decay.

* :class:`StaircaseDecay` / :func:`every_epochs` — the released Symm code's
  staircase decay with a stop value; Smart Mining's halving every 3 epochs.
* :class:`KappaSchedule` — a hand schedule of Smart Mining's κ (start larger, relax).
* :func:`with_coupled_decay` — L2 decay in the gradient (TF1 / Caffe form),
  optional per-variable *gradient* multipliers; :func:`coupled_l2_penalty`
  the term ``coef · Σ ½‖w‖²`` itself.
"""

from symm_keras.optimizers.coupled_decay import (
    CoupledDecayMixin,
    batchnorm_variables,
    coupled_decay_class,
    coupled_l2_penalty,
    decayed_variables,
    with_coupled_decay,
)
from symm_keras.optimizers.schedules import KappaSchedule, StaircaseDecay, every_epochs

__all__ = [
    "CoupledDecayMixin",
    "KappaSchedule",
    "StaircaseDecay",
    "batchnorm_variables",
    "coupled_decay_class",
    "coupled_l2_penalty",
    "decayed_variables",
    "every_epochs",
    "with_coupled_decay",
]
