"""Keras layers: Symmetrical Synthesis, hardest-pair pooling, L2 normalisation."""

from symm_keras.layers.hardest_pair_pooling import HardestPairPooling
from symm_keras.layers.l2_normalize import L2Normalize
from symm_keras.layers.symmetrical_synthesis import SymmetricalSynthesis, partner_indices
