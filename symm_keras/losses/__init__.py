"""Metric-learning losses: the baselines, their Symmetrical-Synthesis variants,
DAMLRRM and Smart Mining. Each is a functional form plus a registered
``keras.losses.Loss`` subclass (``y_true``: integer labels, ``y_pred``: embeddings)
returning per-sample values, so Keras's ``reduction``, ``sample_weight`` and
``class_weight`` apply (see :mod:`symm_keras.losses.base`).

Nothing here imports TensorFlow or numba (DAMLRRM's Prim tree loads
:mod:`symm_keras.mining` on first use). DAMLRRM's metrics are in
:mod:`symm_keras.metrics`.
"""

from symm_keras.losses.angular import AngularLoss, angular_loss, angular_loss_parts
from symm_keras.losses.base import EmbeddingLoss
from symm_keras.losses.contrastive import ContrastiveLoss, contrastive_loss, contrastive_loss_parts
from symm_keras.losses.damlrrm import (
    DAMLRRMLoss,
    damlrrm_graph_loss,
    damlrrm_loss,
    damlrrm_loss_parts,
    damlrrm_shuffled_loss,
)
from symm_keras.losses.lifted_structure import LiftedStructureLoss, lifted_structure_loss, lifted_structure_loss_parts
from symm_keras.losses.multi_similarity import (
    MultiSimilarityLoss,
    multi_similarity_loss,
    multi_similarity_loss_parts,
)
from symm_keras.losses.npair import NPairLoss, npair_loss, npair_loss_parts
from symm_keras.losses.semihard_triplet import SemiHardTripletLoss, semihard_triplet_loss, semihard_triplet_loss_parts
from symm_keras.losses.smart_mining import (
    GlobalLoss,
    RatioTripletLoss,
    SmartMiningLoss,
    TripletTrainingError,
    global_loss,
    ratio_triplet_loss,
    smart_mining_loss,
    smart_mining_loss_parts,
)
from symm_keras.losses.symm_angular import SymmAngularLoss, symm_angular_loss, symm_angular_loss_parts
from symm_keras.losses.symm_base import SymmLoss, symm_pairs
from symm_keras.losses.symm_contrastive import SymmContrastiveLoss, symm_contrastive_loss
from symm_keras.losses.symm_lifted_structure import (
    SymmLiftedStructureLoss,
    symm_lifted_structure_loss,
    symm_lifted_structure_loss_parts,
)
from symm_keras.losses.symm_multi_similarity import SymmMultiSimilarityLoss, symm_multi_similarity_loss
from symm_keras.losses.symm_npair import SymmNPairLoss, symm_npair_loss, symm_npair_loss_parts
from symm_keras.losses.symm_semihard_triplet import (
    SymmSemiHardTripletLoss,
    symm_semihard_triplet_loss,
    symm_semihard_triplet_loss_parts,
)
from symm_keras.losses.symm_triplet import SymmTripletLoss, symm_triplet_loss, symm_triplet_loss_parts
from symm_keras.losses.triplet import TripletLoss, triplet_loss, triplet_loss_parts
