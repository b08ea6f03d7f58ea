"""Real images: short Symm+N-pair run on CUB classes 1–5 with ImageNet MobileNetV2.

Classes 1–5 train (a third of each class's images held out), classes 6–10
are unseen. The run must lower the Symm+N-pair loss on fixed training
batches and raise Recall@1 on the held-out images above the untrained
embedding's (ImageNet backbone + random head). Recall@1 on the unseen
classes is reported next to the frozen backbone's (pooled ImageNet features);
with five training classes no gain is expected there. Settings: 160 px,
batch 5×2, Adam 1e-5 with 10× on the head, backbone batch norm frozen (a
batch of 10 images cannot give batch statistics), 60 steps. Figures:
docs/training.md.
"""

import json
import os

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

INPUT_SIZE = 160
STEPS = 60
LR = 1e-5


def _split(cub_sample_dir):
    from symm_keras import data

    index = data.load_split_index("cub", str(cub_sample_dir), check_files=False).restrict_classes(range(1, 11))
    index = index.existing()
    rng = np.random.default_rng(0)
    held = np.zeros(len(index), bool)
    for c in range(1, 6):
        rows = np.flatnonzero(index.labels == c)
        held[rng.choice(rows, size=len(rows) // 3, replace=False)] = True
    seen = np.isin(index.labels, range(1, 6))
    return index.subset(seen & ~held), index.subset(held), index.subset(~seen)


def _recall_at_1(model, source):
    from experiments import train

    metrics, *_ = train.evaluate(model, source, (1,), batch_size=32, seed=0)
    return metrics["recall@1"]


def test_symm_npair_on_real_cub_images(cub_sample_dir, mobilenet_weights_path, tmp_path):
    import keras

    from experiments import train
    from experiments.building import build_model
    from experiments.sources import ImageSource
    from symm_keras import data, models
    from symm_keras.losses.symm_npair import SymmNPairLoss

    train_index, held_index, unseen_index = _split(cub_sample_dir)
    prep = data.ImagePreprocessing(crop_size=INPUT_SIZE, resize=int(INPUT_SIZE * 256 / 224),
                                   mode=models.backbone_preprocessing("mobilenet_v2"))  # fmt: skip
    train_src, held_src, unseen_src = (ImageSource(i, prep, n) for i, n in
                                       ((train_index, "train"), (held_index, "held-out"), (unseen_index, "unseen")))  # fmt: skip
    cfg = train.method_defaults("symm_npair", "cub").replace(
        name="symm_npair_cub_sample", backbone="mobilenet_v2", backbone_weights=str(mobilenet_weights_path),
        input_size=INPUT_SIZE, embedding_dim=128, classes_per_batch=5, images_per_class=2, lr=LR,
        head_lr_multiplier=10.0, freeze_batchnorm=True, steps=STEPS, eval_every=0, checkpoint_every=0, recall_ks=(1, 2, 4, 8),
    )  # fmt: skip

    # Before training: same seed → same initial weights as the run below.
    keras.utils.set_random_seed(0)
    model0 = build_model(cfg, train_src, seed=0)
    fixed_batches = list(train_src.pk_batches(5, 2, seed=123).take(6).as_numpy_iterator())
    loss_fn = SymmNPairLoss()

    def batch_loss(model):
        return float(np.mean([loss_fn(y, model.predict_on_batch(x)) for x, y in fixed_batches]))

    loss_before = batch_loss(model0)
    held_before = _recall_at_1(model0, held_src)
    backbone = model0.get_layer(index=1)
    frozen = keras.Model(model0.inputs, backbone(model0.inputs[0]))
    unseen_frozen = _recall_at_1(frozen, unseen_src)

    result = train.run_training(cfg, train_src, held_src, str(tmp_path / "run"), seed=0, log_every=10,
                                tsne_points=200, nn_queries=6, nn_k=4, eval_batch_size=32, verbose=0)  # fmt: skip
    model1 = build_model(cfg, train_src, seed=0)
    from experiments.checkpoints import CheckpointManager

    manager = CheckpointManager(str(tmp_path / "run" / "checkpoints"))
    with np.load(os.path.join(manager.latest(), "model.npz")) as f:
        for i, v in enumerate(model1.variables):
            v.assign(f[f"v{i:05d}"])
    loss_after = batch_loss(model1)
    held_after = result["metrics"]["recall@1"]
    unseen_after = _recall_at_1(model1, unseen_src)
    figures = {
        "train_images": len(train_index), "held_out_images": len(held_index), "unseen_images": len(unseen_index),
        "steps": STEPS, "input_size": INPUT_SIZE,
        "loss_before": loss_before, "loss_after": loss_after,
        "held_out_recall@1_untrained": held_before, "held_out_recall@1_trained": held_after,
        "unseen_recall@1_frozen_backbone": unseen_frozen, "unseen_recall@1_trained": unseen_after,
        "train_seconds": result["train_seconds"],
    }  # fmt: skip
    print("REALDATA", json.dumps(figures))
    out = os.environ.get("SYMM_KERAS_REALDATA_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(figures, f, indent=1)
    assert loss_after < loss_before
    assert held_after > held_before
