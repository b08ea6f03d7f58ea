"""The run directory: one process at a time, and what ``--restart`` clears.

``<logdir>/.lock`` is held with ``fcntl.flock`` by the process training in
the directory and holds its pid; the operating system drops the lock when the
process ends, however it ends, so a killed run never leaves a stale lock.
"""

import fcntl
import os
import shutil

LOCK_FILE = ".lock"
#: what a run writes into its directory (``--restart`` removes all of it).
RUN_OUTPUTS = ("checkpoints", "train", "eval", "run.json", "results.json", "results.md", "model.keras",
               "test_embeddings.npz")  # fmt: skip


class RunDirectoryBusy(RuntimeError):
    """Another process trains in this run directory."""


class RunLock:
    """Context manager: hold ``<logdir>/.lock`` for the life of a run."""

    def __init__(self, logdir):
        self.path = os.path.join(logdir, LOCK_FILE)
        self._fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryBusy(
                f"{os.path.dirname(self.path)} is in use by another training process (pid {holder}); "
                "wait for it to end, stop it, or use another --logdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None
        return False


def clear_outputs(logdir):
    """Remove every output of an earlier run in ``logdir`` (checkpoints, TensorBoard files, results)."""
    for name in RUN_OUTPUTS:
        path = os.path.join(logdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
