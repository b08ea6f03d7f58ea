"""symm_keras.losses."""
