"""``SymmetricalSynthesis`` layer: one synthetic point per embedding (Symm eq. 1–2).

In a P×2 batch each embedding ``x_b`` is mirrored about the other image of its
class (its *partner*): ``x'_b = β[α(r − x_b) + x_b]`` with ``r`` the
projection of ``x_b`` on the partner (eq. 1–2; α = 2, β = 1 is the symmetric
point, see :func:`symm_keras.ops.synthesis.mirror_points` for the released
formula and norm forcing). The output is row-aligned with the input, so
``concatenate([x, layer(x, labels)])`` gives the original + synthetic points
of paper Fig. 3. The Symm losses synthesise internally; this layer is for
models, visualisation (paper Fig. 8) and custom losses.

Every labelling is defined, the same eagerly and under ``jit`` on every
backend (like the P×K losses, :mod:`symm_keras.ops.pairs`): an embedding's
partner is the first *other* image of its class in batch order (for the
class's first image, its second; :func:`partner_indices`), and an embedding
whose class occurs once is mirrored about itself, which returns it
unchanged for α = 2, β = 1 (``x·x/‖x‖² = 1`` for ``‖x‖ ≥ 1e-6``; in general
``βx``, released formula ``β(α − 1)x``; an all-zero row stays 0), finite
with finite gradients for every formula and ``force_norm``.
:func:`symm_keras.ops.pairs.check_pk_layout` is the opt-in eager check for
callers that want to insist on an exact P×2 batch; the layer does not call it.
"""

import keras
from keras import ops

from symm_keras.ops.labels import flatten_labels, positive_mask
from symm_keras.ops.synthesis import mirror_points, pop_synthesis_options


def partner_indices(labels):
    """Index of the first other same-class image of every batch entry, in batch order (itself if none)."""
    partners = positive_mask(labels)
    n = ops.shape(labels)[0]
    has_partner = ops.any(partners, axis=1)
    partner = ops.cast(ops.argmax(ops.cast(partners, "int32"), axis=1), "int32")
    return ops.where(has_partner, partner, ops.arange(n, dtype="int32"))


@keras.saving.register_keras_serializable(package="symm_keras")
class SymmetricalSynthesis(keras.layers.Layer):
    """Mirror every embedding about its same-class partner (Symm eq. 1–2).

    Call as ``layer(embeddings, labels)`` with ``embeddings`` ``(B, D)`` and
    integer ``labels`` ``(B,)``/``(B, 1)``, built for a P×2 batch; any other
    layout is defined (module docstring), never checked. Returns ``(B, D)``.

    Args:
        synthesis_alpha, synthesis_beta: eq. 2's α and β (default 2, 1: the
            symmetric point).
        formula: ``"paper"`` (eq. 2, default) or ``"released"``.
        force_norm: ``None``, ``"point"`` or ``"axis"`` (Fig. 4 ablation).
    """

    def __init__(self, **kwargs):
        synthesis, self._synthesis = pop_synthesis_options(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        self.synthesis = synthesis

    def call(self, embeddings, labels):
        labels = flatten_labels(labels, embeddings)
        partner = ops.take(embeddings, partner_indices(labels), axis=0)
        return mirror_points(embeddings, partner, **self._synthesis)

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        return embeddings_shape

    def get_config(self):
        config = super().get_config()
        config.update(self.synthesis)
        return config
