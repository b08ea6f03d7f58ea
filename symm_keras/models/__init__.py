"""symm_keras.models."""
