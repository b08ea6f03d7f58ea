"""symm_keras.data."""
