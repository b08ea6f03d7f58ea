"""Embedding head and the full embedding model (backbone → pooled features → embedding).

All three papers put one randomly initialised fully connected layer on the
globally pooled GoogLeNet features:

* Symm (Sec. 4): 512-d, Xavier (Glorot) initialisation; triplet/lifted use
  L2-normalised embeddings, N-pair/angular the raw ones;
* DAMLRRM (Sec. 4.1): 512-d;
* Smart Mining (Sec. 4): 64-d;

and DAMLRRM and Smart Mining train it with a 10× learning rate
(``head_lr_multipliers`` + ``lr_multiplier.with_lr_multipliers``; the Symm
paper states no multiplier)::

    e = W f + b,    W ~ Glorot-uniform, b = 0,    optionally e ← e / max(‖e‖, ε)
"""

import keras
from keras import ops

from symm_keras.models.registry import build_backbone
from symm_keras.ops.distances import l2_normalize as _l2_normalize

register = keras.saving.register_keras_serializable(package="symm_keras")

HEAD_NAME = "embedding_head"
HEAD_PATTERN = f"^{HEAD_NAME}/"


@register
class EmbeddingHead(keras.layers.Layer):
    """Fully connected embedding layer ``e = W f + b`` with optional L2 normalisation.

    Args:
        embedding_dim: output size (512 Symm/DAMLRRM, 64 Smart Mining).
        l2_normalize: divide each embedding by its norm (zero vectors stay zero).
        kernel_initializer: ``W`` initialiser (Glorot-uniform, as the papers).
        name: layer name; the default ``"embedding_head"`` is what
            ``head_lr_multipliers`` matches.
    """

    def __init__(
        self,
        embedding_dim=512,
        l2_normalize=False,
        kernel_initializer="glorot_uniform",
        name=HEAD_NAME,
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        self.embedding_dim = embedding_dim
        self.l2_normalize = bool(l2_normalize)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"{self.name} expects pooled features (batch, channels) with known channels, got {input_shape}"
            )
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.embedding_dim), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(shape=(self.embedding_dim,), initializer="zeros", name="bias")

    def call(self, features):
        embeddings = ops.add(ops.matmul(features, self.kernel), self.bias)
        if self.l2_normalize:
            embeddings = _l2_normalize(embeddings, axis=-1)
        return embeddings

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            embedding_dim=self.embedding_dim,
            l2_normalize=self.l2_normalize,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


def head_lr_multipliers(multiplier=10.0):
    """``lr_multipliers`` giving the embedding head ``multiplier ×`` the backbone learning rate."""
    return {HEAD_PATTERN: float(multiplier)}


def build_embedding_model(
    backbone="googlenet_caffe",
    embedding_dim=512,
    l2_normalize=False,
    weights=None,
    input_size=None,
    name=None,
    **backbone_kwargs,
):
    """Images ``(B, S, S, 3)`` → embeddings ``(B, embedding_dim)``.

    Args:
        backbone: a name for ``build_backbone`` (``"googlenet_caffe"``,
            ``"inception_v1"``, ``"mobilenet_v2"``, ...) or a ``keras.Model``
            that already maps images to pooled ``(B, D)`` features.
        embedding_dim: head output size.
        l2_normalize: L2-normalise the embeddings.
        weights: backbone weights (``None``, ``"imagenet"`` or a file); the head is always Glorot-initialised.
        input_size: input side (``None`` → the backbone's default, 227 for GoogLeNet Caffe).
        name: model name (default ``"<backbone>_embedding"``).
        **backbone_kwargs: passed to ``build_backbone``.

    Returns:
        ``keras.Model`` whose layers are the backbone (one nested model,
        ``model.get_layer(backbone.name)``) and ``EmbeddingHead`` named
        ``"embedding_head"``; its variables' paths start with
        ``"embedding_head/"`` (``head_lr_multipliers()``).
    """
    if isinstance(backbone, keras.Model):
        if weights is not None or backbone_kwargs:
            raise ValueError("weights/backbone kwargs apply to a backbone given by name, not to a keras.Model")
        base = backbone
    else:
        base = build_backbone(backbone, weights=weights, input_size=input_size, pooling="avg", **backbone_kwargs)
    if len(base.output_shape) != 2:
        raise ValueError(
            f"backbone {base.name!r} must output pooled features (batch, channels), got {base.output_shape}"
        )
    inputs = keras.Input(base.input_shape[1:], name="images")
    features = base(inputs)
    embeddings = EmbeddingHead(embedding_dim, l2_normalize=l2_normalize)(features)
    return keras.Model(inputs, embeddings, name=name or f"{base.name}_embedding")
