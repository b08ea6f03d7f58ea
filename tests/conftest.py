"""Shared test set-up: backend selection, seeds and the real-data directory.

Tests marked ``realdata`` read real images and weights from
``$SYMM_KERAS_SHARED_DIR`` (default: ``../shared`` beside the checkout) and
skip, naming the missing path, when they are absent.

The backend comes from ``KERAS_BACKEND`` (``make test`` runs the suite on
TensorFlow, then the Keras-math suites again on JAX and on torch). A test marked
``backend("tensorflow")`` belongs to the named backends' passes only (e.g.
``tf.distribute``): the other passes deselect it rather than skip it, since a
skip means a missing external resource.
"""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Oracle comparisons need full float32 matrix products; on NVIDIA GPUs JAX's
# default is TF32 (~3e-4 relative error, docs/gpu.md). No effect on a CPU.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("SYMM_KERAS_SHARED_DIR", REPO_ROOT.parent / "shared"))
CUB_SAMPLE = SHARED / "data" / "cub_sample"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5"


def pytest_collection_modifyitems(config, items):
    """Deselect the tests whose ``backend`` marker does not name the active backend."""
    import keras

    active = keras.backend.backend()
    other = [item for item in items if (m := item.get_closest_marker("backend")) and active not in m.args]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if item not in other]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def cub_sample_dir():
    if not (CUB_SAMPLE / "images.txt").exists():
        pytest.skip(f"real CUB sample not found at {CUB_SAMPLE} "
                    "(set SYMM_KERAS_SHARED_DIR to the directory that holds data/cub_sample)")
    return CUB_SAMPLE


@pytest.fixture
def mobilenet_weights_path():
    if not MOBILENET_WEIGHTS.exists():
        pytest.skip(f"ImageNet MobileNetV2 weights not found at {MOBILENET_WEIGHTS} "
                    "(set SYMM_KERAS_SHARED_DIR to the directory that holds weights/)")
    return MOBILENET_WEIGHTS
