"""The two layers the BVLC/Caffe GoogLeNet needs beyond core Keras.

* ``LocalResponseNormalization`` — across-channel LRN (Krizhevsky et al. 2012,
  Sec. 3.3), used twice in GoogLeNet's stem (Szegedy et al. 2015, Table 1)::

      b_c = a_c / (bias + alpha · Σ_{c' = c−r}^{c+r} a_c'²) ** beta

  with TensorFlow's parameterisation (``depth_radius`` r, ``alpha`` per
  element). Caffe's ``local_size = n, alpha = α`` is ``r = (n − 1) / 2`` and
  ``alpha = α / n`` (``from_caffe``); BVLC GoogLeNet uses n = 5, α = 1e-4,
  β = 0.75, k = 1.
* ``CaffeMaxPooling2D`` — max pooling with Caffe's *ceil* output size
  ``out = ceil((H + 2p − k) / s) + 1`` (Keras/TF use floor, or "same" with a
  different padding split): the input is padded with −inf at the bottom/right
  (and ``p`` on every side) so the windows are exactly Caffe's.
"""

import math

import keras
from keras import ops

register = keras.saving.register_keras_serializable(package="symm_keras")


@register
class LocalResponseNormalization(keras.layers.Layer):
    """Across-channel local response normalisation (channels last), keras.ops only.

    Args:
        depth_radius: half-width r of the channel window (window 2r + 1).
        bias: additive constant k.
        alpha: scale of the sum of squares (per element, TF convention).
        beta: exponent.
    """

    def __init__(self, depth_radius=2, bias=1.0, alpha=1e-4 / 5, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if int(depth_radius) != depth_radius or depth_radius < 0:
            raise ValueError(f"depth_radius must be a non-negative integer, got {depth_radius!r}")
        if not bias > 0:
            raise ValueError(f"bias must be > 0 (it keeps the denominator positive), got {bias!r}")
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    @classmethod
    def from_caffe(cls, local_size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        """The layer equal to Caffe's ``LRN(local_size, alpha, beta, k)`` (ACROSS_CHANNELS)."""
        if local_size % 2 != 1:
            raise ValueError(f"Caffe LRN local_size must be odd, got {local_size}")
        return cls(depth_radius=(local_size - 1) // 2, bias=k, alpha=alpha / local_size, beta=beta, **kwargs)

    def call(self, inputs):
        squared = ops.square(inputs)
        channels = inputs.shape[-1]
        r = self.depth_radius
        if r:
            padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[r, r]])
            window_sum = padded[..., 0:channels]
            for offset in range(1, 2 * r + 1):
                window_sum = window_sum + padded[..., offset : offset + channels]
        else:
            window_sum = squared
        return inputs * ops.power(self.bias + self.alpha * window_sum, -self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta)
        return config


def caffe_pool_output_size(size, pool_size, strides, padding=0):
    """Caffe's pooling output length: ``ceil((size + 2p − k) / s) + 1``, last window starting inside."""
    out = int(math.ceil((size + 2 * padding - pool_size) / strides)) + 1
    if padding and (out - 1) * strides >= size + padding:
        out -= 1
    return out


@register
class CaffeMaxPooling2D(keras.layers.Layer):
    """Max pooling with Caffe's ceil-mode output size (channels last, static H, W).

    Args:
        pool_size: window side k.
        strides: stride s.
        padding: symmetric padding p (Caffe ``pad``).
    """

    def __init__(self, pool_size=3, strides=2, padding=0, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.padding = int(padding)

    def _pads(self, size):
        if size is None:
            raise ValueError(
                f"{self.name}: Caffe ceil-mode pooling needs a static spatial size; "
                "build the model with a fixed input_size (e.g. 224 or 227)."
            )
        out = caffe_pool_output_size(size, self.pool_size, self.strides, self.padding)
        end = (out - 1) * self.strides + self.pool_size - size - self.padding
        return self.padding, max(end, 0), out

    def call(self, inputs):
        top, bottom, _ = self._pads(inputs.shape[1])
        left, right, _ = self._pads(inputs.shape[2])
        if top or bottom or left or right:
            inputs = ops.pad(
                inputs, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=float("-inf")
            )
        return ops.max_pool(inputs, self.pool_size, self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._pads(input_shape[1])[2], self._pads(input_shape[2])[2], input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return config
