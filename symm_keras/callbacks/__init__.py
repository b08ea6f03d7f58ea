"""symm_keras.callbacks."""
