"""symm_keras.layers."""
