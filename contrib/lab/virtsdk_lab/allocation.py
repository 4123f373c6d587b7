"""Allocate a free lab index on this machine and remember what each lab created.

A lab holds an exclusive ``fcntl`` lock on ``/run/virtsdk-lab/<index>.lock`` for as
long as its owning process lives, so parallel pytest processes of different engineers
get different indexes (hence different namespaces, bridges and subnets).  Next to the
lock, ``<index>.json`` records the lab's description (see :mod:`virtsdk_lab.state`).

An index whose lock is free but whose state file or resources still exist belongs to
a lab whose process died: it is *stale* and is cleaned before reuse.  A lab started
by ``virtsdk lab up`` outlives its process on purpose: its state says
``persistent``, and it is only removed by ``virtsdk lab down``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from virtsdk_lab.errors import LabError
from virtsdk_lab.naming import MAX_INDEX, MIN_INDEX

RUN_DIR = Path("/run/virtsdk-lab")


class IndexLock:
    """An exclusive lock on one lab index, held through an open file descriptor."""

    def __init__(self, index: int, fd: int, run_dir: Path) -> None:
        self.index = index
        self._fd: int | None = fd
        self.run_dir = run_dir

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent); the lock file stays for the next user."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_path(index: int, run_dir: Path = RUN_DIR) -> Path:
    return run_dir / f"{index}.lock"


def try_lock(index: int, run_dir: Path = RUN_DIR) -> IndexLock | None:
    """Take the lock of ``index`` without waiting; ``None`` if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(index, run_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return IndexLock(index, fd, run_dir)


def allocate(
    is_reserved: Callable[[int], bool],
    clean_stale: Callable[[int], object],
    run_dir: Path = RUN_DIR,
) -> IndexLock:
    """Lock the lowest free lab index.

    Called by :meth:`Lab.up` in the test process.  ``is_reserved(index)`` says an
    unlocked index still belongs to a persistent (CLI) lab; ``clean_stale(index)``
    removes whatever a dead owner left behind before the index is reused.  Raises
    :class:`LabError` when all indexes are taken.
    """
    for index in range(MIN_INDEX, MAX_INDEX + 1):
        lock = try_lock(index, run_dir)
        if lock is None:
            continue
        if is_reserved(index):
            lock.release()
            continue
        try:
            clean_stale(index)
        except Exception:
            lock.release()
            raise
        return lock
    raise LabError(f"no free lab index in {MIN_INDEX}..{MAX_INDEX} (see {run_dir})")
