"""Keras metrics: Symmetrical Synthesis's synthetic hard-pair ratio (paper Fig. 7)."""

from symm_keras.metrics.synthetic_hard_pair_ratio import SyntheticHardPairRatio
