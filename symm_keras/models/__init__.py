"""Backbones, embedding head, weight converters and per-variable learning-rate multipliers.

* ``build_embedding_model(backbone="googlenet_caffe", embedding_dim=512, l2_normalize=False,
  weights=None, input_size=None)`` — images → embeddings; head layer ``"embedding_head"``.
* ``build_backbone(name, weights, input_size)`` / ``backbone_preprocessing(name)`` /
  ``available_backbones()`` — GoogLeNet (BVLC Caffe layout, TF-slim Inception v1) and
  ``keras.applications`` models by name.
* ``with_lr_multipliers(optimizer, head_lr_multipliers(10.0))`` — 10× learning rate for the head.
* ``load_slim_inception_v1_checkpoint`` / ``load_caffe_googlenet_weights`` — ImageNet weights
  (TF-slim checkpoint; BVLC ``.caffemodel`` decoded without Caffe, or its ``.npz``/``.mat`` export).
"""

from symm_keras.models.caffe_weights import load_caffe_googlenet_weights, save_caffe_googlenet_npz
from symm_keras.models.caffemodel import caffemodel_to_npz, read_caffemodel
from symm_keras.models.embedding import EmbeddingHead, build_embedding_model, head_lr_multipliers
from symm_keras.models.googlenet_caffe import googlenet_caffe
from symm_keras.models.googlenet_layers import CaffeMaxPooling2D, LocalResponseNormalization
from symm_keras.models.inception_v1 import inception_v1
from symm_keras.models.lr_multiplier import (
    AdamWithLRMultipliers,
    AdamWWithLRMultipliers,
    LRMultiplierMixin,
    RMSpropWithLRMultipliers,
    SGDWithLRMultipliers,
    lr_multiplier_class,
    with_lr_multipliers,
)
from symm_keras.models.registry import (
    available_backbones,
    backbone_preprocessing,
    build_backbone,
    default_input_size,
)
from symm_keras.models.slim_checkpoint import load_slim_inception_v1_checkpoint, slim_checkpoint_shapes
