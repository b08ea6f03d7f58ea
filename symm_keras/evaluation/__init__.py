"""symm_keras.evaluation."""
