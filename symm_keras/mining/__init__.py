"""symm_keras.mining."""
