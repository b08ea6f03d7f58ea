"""``L2Normalize``: project embeddings onto the unit hypersphere.

``y = x / max(‖x‖₂, ε)`` along ``axis`` (zero vectors stay zero, finite
gradient; :func:`symm_keras.ops.l2_normalize`). The Symm paper's triplet and
lifted-structure experiments use L2-normalised 512-d features (§4.2).
"""

import keras

from symm_keras.ops.distances import l2_normalize


@keras.saving.register_keras_serializable(package="symm_keras")
class L2Normalize(keras.layers.Layer):
    """Divide by the L2 norm along ``axis`` (default -1), floored at ``epsilon``."""

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"axis must be an integer, got {axis!r}.")
        if not float(epsilon) > 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}.")
        self.axis = axis
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def call(self, inputs):
        return l2_normalize(inputs, axis=self.axis, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config
