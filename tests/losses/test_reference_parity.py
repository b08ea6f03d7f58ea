"""The options of docs/migrating.md reproduce pytorch-metric-learning's values.

Runs where the optional ``pytorch_metric_learning`` (and torch) are installed;
skipped elsewhere. TF Addons' semi-hard golden value is in
test_semihard_triplet.py (TF Addons itself is no longer installable).
"""

import numpy as np
import pytest

from symm_keras import losses as S
from tests.losses.autodiff import to_numpy

torch = pytest.importorskip("torch")
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")


def _batch(seed, classes=6, per_class=2, dim=8):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(classes), per_class))
    x = rng.normal(size=(len(labels), dim)).astype("float32")
    return labels, x / np.linalg.norm(x, axis=1, keepdims=True)  # PML normalises embeddings


def _pml(loss, labels, x, miner=None):
    xt, yt = torch.tensor(x), torch.tensor(labels)
    return float(loss(xt, yt, miner(xt, yt)) if miner else loss(xt, yt))


CASES = [
    ("NPairsLoss", lambda: pml_losses.NPairsLoss(), None, lambda: S.NPairLoss(l2_reg=0.0), 2),
    ("TripletMarginLoss", lambda: pml_losses.TripletMarginLoss(margin=0.2), None,
     lambda: S.TripletLoss(margin=0.2, squared=False, average="nonzero"), 3),
    ("TripletMarginLoss_squared",
     lambda: pml_losses.TripletMarginLoss(margin=0.2, distance=pml_distances.LpDistance(power=2)), None,
     lambda: S.TripletLoss(margin=0.2, average="nonzero"), 3),
    ("LiftedStructureLoss", lambda: pml_losses.LiftedStructureLoss(), None, lambda: S.LiftedStructureLoss(), 3),
    ("MultiSimilarityLoss", lambda: pml_losses.MultiSimilarityLoss(), None,
     lambda: S.MultiSimilarityLoss(base=0.5, mining=False), 3),
    ("MultiSimilarityLoss_miner", lambda: pml_losses.MultiSimilarityLoss(),
     lambda: pml_miners.MultiSimilarityMiner(epsilon=0.1), lambda: S.MultiSimilarityLoss(base=0.5), 3),
]  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,theirs,miner,ours,per_class", CASES, ids=[c[0] for c in CASES])
def test_option_reproduces_pml(name, theirs, miner, ours, per_class, seed):
    labels, x = _batch(seed, per_class=per_class)
    expected = _pml(theirs(), labels, x, miner() if miner else None)
    np.testing.assert_allclose(float(to_numpy(ours()(labels, x))), expected, rtol=2e-6, atol=1e-7)
