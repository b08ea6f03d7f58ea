"""Keras metrics: Symmetrical Synthesis's synthetic hard-pair ratio (paper Fig. 7),
the parts of any loss that reports them (``LossPart``) and DAMLRRM's parts."""

from symm_keras.metrics.damlrrm_parts import DAMLRRMLossPart, damlrrm_metrics
from symm_keras.metrics.loss_part import LossPart, loss_part_metrics
from symm_keras.metrics.synthetic_hard_pair_ratio import SyntheticHardPairRatio
