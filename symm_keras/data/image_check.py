"""Check that every image of an index decodes, before training starts.

A corrupt or truncated file is either skipped — reported with its path in a
warning and counted — or fails the run (``on_corrupt="fail"``). Skipping never
renumbers anything: rows keep their position and label, the bad rows are
just never sampled (see ``eligible`` in :mod:`symm_keras.data.samplers`).
The check uses TensorFlow's own decoder, the one the pipelines use.
"""

import dataclasses
import logging
import os
import warnings

import numpy as np
import tensorflow as tf

ON_CORRUPT = ("skip", "fail")
_SNIFF = 64


class CorruptImagesError(ValueError):
    """Images of the index do not decode."""

    def __init__(self, paths):
        self.paths = list(paths)
        shown = "\n  ".join(self.paths[:20])
        more = f"\n  ... and {len(self.paths) - 20} more" if len(self.paths) > 20 else ""
        super().__init__(
            f"{len(self.paths)} images cannot be decoded:\n  {shown}{more}\n"
            "Replace them, run `python -m data_prep.prepare --check decode` to write an index without them, "
            "or pass on_corrupt='skip' to leave them out (they are counted and reported)."
        )


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    """Result of :func:`check_images`: ``ok[i]`` is False for a row that did not decode.

    ``decoded``: how many images were decoded (all of them for a thorough check,
    the suspects of a quick one).
    """

    ok: np.ndarray
    corrupt_paths: tuple
    decoded: int = 0

    def summary(self):
        """One line: images checked, decoded, corrupt (with the first paths)."""
        line = f"image check: {len(self.ok)} images, {self.decoded} decoded, {self.num_corrupt} corrupt"
        if self.corrupt_paths:
            line += ": " + ", ".join(self.corrupt_paths[:5]) + (" ..." if self.num_corrupt > 5 else "")
        return line

    @property
    def num_corrupt(self):
        return len(self.corrupt_paths)

    @property
    def eligible_rows(self):
        return np.flatnonzero(self.ok)


def _decodes(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return tf.reduce_min(tf.shape(image)[:2]) > 0


def looks_truncated(path):
    """Cheap byte-level test: unknown signature, or a JPEG/PNG whose end marker is absent.

    Reads the first and last 64 bytes only; catches truncated downloads, not
    damage inside the data (that needs a full decode).
    """
    with open(path, "rb") as f:
        head = f.read(_SNIFF)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _SNIFF))
        tail = f.read(_SNIFF)
    if head.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in tail
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" not in tail
    return not head.startswith((b"GIF87a", b"GIF89a", b"BM"))


def check_images(index, on_corrupt="skip", thorough=True, num_parallel_calls=tf.data.AUTOTUNE, progress=False):
    """Check that the images of ``index`` decode (missing files are checked first).

    Args:
        index: a :class:`~symm_keras.data.split_index.SplitIndex`.
        on_corrupt: ``"skip"`` (warn with the paths, return them) or ``"fail"``
            (raise :class:`CorruptImagesError` listing them).
        thorough: decode every image (``True``), or only those that
            :func:`looks_truncated` flags (``False``: seconds for SOP, catches
            truncated files only).
        progress: show a tqdm bar over the decoded images.

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
    ok = np.ones(len(paths), dtype=bool)
    if thorough:
        suspects = np.arange(len(paths), dtype=np.int64)
    else:
        suspects = np.array([i for i, p in enumerate(paths) if looks_truncated(p)], dtype=np.int64)
    ok[suspects] = False
    rows = tf.data.Dataset.from_tensor_slices((suspects, paths[suspects]))
    decoded = rows.map(
        lambda row, path: (row, _decodes(path)), num_parallel_calls=num_parallel_calls, deterministic=False
    ).ignore_errors()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(suspects), desc="decode check", unit="img", leave=False)
    for row, fine in decoded.as_numpy_iterator():
        ok[row] = fine
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
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
    return ImageCheck(ok=ok, corrupt_paths=corrupt, decoded=len(suspects))


def check_decode(index, on_corrupt="fail", progress=False, num_parallel_calls=tf.data.AUTOTUNE):
    """Decode every image of ``index`` once: what ``python -m data_prep.prepare --check decode`` does.

    For a trainer's ``--check_decode`` flag, before the pipelines are built
    (the pipelines' default ``validate="quick"`` sees truncated files only,
    not damage inside the data). Seconds for CUB or Cars196 on a few cores,
    minutes for SOP.

    Args:
        index: a :class:`~symm_keras.data.split_index.SplitIndex` (e.g. ``index.train()``).
        on_corrupt: ``"fail"`` (default: raise :class:`CorruptImagesError` listing
            them) or ``"skip"`` (warn; leave them out via ``result.eligible_rows``).
        progress: show a tqdm bar.

    Returns:
        :class:`ImageCheck` (``summary()`` gives a one-line report).

    Raises:
        MissingFilesError: files are missing (listed).
        CorruptImagesError: ``on_corrupt="fail"`` and some images do not decode.
    """
    return check_images(index, on_corrupt, thorough=True, num_parallel_calls=num_parallel_calls, progress=progress)
