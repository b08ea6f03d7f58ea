"""symm_keras.callbacks."""

from symm_keras.callbacks.retrieval_evaluation import RetrievalEvaluation
