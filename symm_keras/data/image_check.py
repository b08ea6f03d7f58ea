"""Check that every image of an index decodes, before training starts.

A corrupt or truncated file is either skipped — reported with its path in a
warning and counted — or fails the run (``on_corrupt="fail"``). Skipping never
renumbers anything: rows keep their position and label, the bad rows are
just never sampled (see ``eligible`` in :mod:`symm_keras.data.samplers`).
The check uses TensorFlow's own decoder, the one the pipelines use.
"""

import dataclasses
import logging
import warnings

import numpy as np
import tensorflow as tf

ON_CORRUPT = ("skip", "fail")


class CorruptImagesError(ValueError):
    """Images of the index do not decode."""

    def __init__(self, paths):
        self.paths = list(paths)
        shown = "\n  ".join(self.paths[:20])
        more = f"\n  ... and {len(self.paths) - 20} more" if len(self.paths) > 20 else ""
        super().__init__(
            f"{len(self.paths)} images cannot be decoded:\n  {shown}{more}\n"
            "Replace them, or pass on_corrupt='skip' to leave them out (they are counted and reported)."
        )


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    """Result of :func:`check_images`: ``ok[i]`` is False for a row that did not decode."""

    ok: np.ndarray
    corrupt_paths: tuple

    @property
    def num_corrupt(self):
        return len(self.corrupt_paths)

    @property
    def eligible_rows(self):
        return np.flatnonzero(self.ok)


def _decodes(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.reduce_min(tf.shape(image)[:2]) > 0


def check_images(index, on_corrupt="skip", num_parallel_calls=tf.data.AUTOTUNE):
    """Decode every image of ``index`` once (missing files are checked first).

    Args:
        index: a :class:`~symm_keras.data.split_index.SplitIndex`.
        on_corrupt: ``"skip"`` (warn with the paths, return them) or ``"fail"``
            (raise :class:`CorruptImagesError` listing them).

    Returns:
        :class:`ImageCheck`.

    Raises:
        MissingFilesError: files are missing (listed).
        CorruptImagesError: ``on_corrupt="fail"`` and some images do not decode.
    """
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}.")
    index.check_files()
    paths = index.full_paths()
    rows = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), paths))
    decoded = rows.map(
        lambda row, path: (row, _decodes(path)), num_parallel_calls=num_parallel_calls, deterministic=False
    ).ignore_errors()
    ok = np.zeros(len(paths), dtype=bool)
    for row, fine in decoded.as_numpy_iterator():
        ok[row] = fine
    corrupt = tuple(index.paths[~ok].tolist())
    if corrupt:
        if on_corrupt == "fail":
            raise CorruptImagesError([str(p) for p in paths[~ok]])
        message = (
            f"skipping {len(corrupt)} of {len(paths)} images of {index.root} that do not decode "
            f"(labels of the other images unchanged): {', '.join(corrupt[:20])}"
            + (" ..." if len(corrupt) > 20 else "")
        )
        warnings.warn(message, stacklevel=2)
        logging.getLogger(__name__).warning(message)
    return ImageCheck(ok=ok, corrupt_paths=corrupt)
