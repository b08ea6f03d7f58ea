"""Print every P×K loss's value and gradient on fixed inputs, as JSON.

Run as ``KERAS_BACKEND=jax python -m tests.losses.backend_values``; the
backend-agreement test runs it under each backend and compares the outputs.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests.losses.autodiff import value_and_gradient  # noqa: E402
from tests.losses.discovery import discover_losses, images_per_class  # noqa: E402
from tests.losses.toy_data import clustered_embeddings, pk_labels  # noqa: E402


def fixed_inputs(loss_class):
    """Same labels and embeddings for a given loss class on every backend."""
    rng = np.random.default_rng(2020)
    labels = pk_labels(rng, 6, images_per_class(loss_class)).astype("int32")
    x = clustered_embeddings(rng, labels, 8, spread=0.6).astype("float32")
    return labels, x


def backend_values():
    # One trace per loss on JAX (op-by-op dispatch there is slow); eager on TF.
    compiled = keras.backend.backend() == "jax"
    results = {}
    for loss_class in discover_losses("pk"):
        labels, x = fixed_inputs(loss_class)
        loss = loss_class()
        value, grad = value_and_gradient(lambda e: loss(labels, e), x, compiled=compiled)
        results[loss_class.__name__] = {"value": float(value), "grad": grad.tolist()}
    return results


if __name__ == "__main__":
    print("BACKEND_VALUES " + json.dumps(backend_values()))
