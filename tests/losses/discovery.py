"""Find every ``EmbeddingLoss`` subclass in ``symm_keras.losses`` (pkgutil walk).

New loss modules are covered by the shared contract tests automatically as
soon as they define a class with ``batch_layout == "pk"``.
"""

import importlib
import inspect
import pkgutil

import symm_keras.losses
from symm_keras.losses.base import EmbeddingLoss


def discover_losses(batch_layout="pk"):
    """Sorted list of loss classes defined in the package with that layout."""
    found = {}
    package = symm_keras.losses
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, EmbeddingLoss)
                and obj is not EmbeddingLoss
                and obj.__module__ == module.__name__
                and getattr(obj, "batch_layout", None) == batch_layout
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[key] for key in sorted(found)]


def images_per_class(loss_class):
    """The K a valid test batch uses for this loss (2 unless it demands another)."""
    return getattr(loss_class, "images_per_class", None) or 2
