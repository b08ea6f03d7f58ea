"""Keras callbacks: retrieval evaluation, Smart Mining's epoch mining and
adaptive κ, DAMLRRM's sampling-size counter."""

from symm_keras.callbacks.adaptive_kappa import AdaptiveKappa
from symm_keras.callbacks.retrieval_evaluation import RetrievalEvaluation
from symm_keras.callbacks.sampling_size import SamplingSize, SamplingSizeCounter
from symm_keras.callbacks.smart_mining import SmartMining
