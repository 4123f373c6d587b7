"""The small JSON record a transfer keeps under ``dest_dir`` on the destination.

Written by whoever creates files there (the local sender, the stream receiver), read
by ``finish_receive`` / ``cancel_receive`` on the destination.  It lists the names
the transfer created, so a cancel removes exactly those and nothing that was there
before, and, once complete, what each file should contain.  Writes are atomic
(temporary file + rename).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from virtsdk.exceptions import Invalid
from virtsdk.transfer.extents import allocated_bytes
from virtsdk.transfer.names import STATE_PREFIX, confine_name

if TYPE_CHECKING:
    from virtsdk.transfer.base import ReceivedFile


def state_path(dest_dir: str, transfer_id: str) -> str:
    """``dest_dir/.virtsdk-transfer-<id>.json``."""
    if not transfer_id.isalnum():
        raise ValueError(f"bad transfer id {transfer_id!r}")
    return os.path.join(dest_dir, f"{STATE_PREFIX}transfer-{transfer_id}.json")


def work_dir(dest_dir: str, transfer_id: str) -> str:
    """``dest_dir/.virtsdk-transfer-<id>.d``: a receiver's private directory."""
    if not transfer_id.isalnum():
        raise ValueError(f"bad transfer id {transfer_id!r}")
    return os.path.join(dest_dir, f"{STATE_PREFIX}transfer-{transfer_id}.d")


def write_state(dest_dir: str, transfer_id: str, state: dict[str, Any]) -> None:
    path = state_path(dest_dir, transfer_id)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_state(dest_dir: str, transfer_id: str) -> dict[str, Any] | None:
    try:
        with open(state_path(dest_dir, transfer_id), encoding="utf-8") as fh:
            state: dict[str, Any] = json.load(fh)
            return state
    except FileNotFoundError:
        return None


def make_parents(dest_dir: str, path: str) -> list[str]:
    """Create the missing directories between ``dest_dir`` and ``path`` (a confined
    file path); returns them relative to ``dest_dir``, outermost first, so the caller
    can record them as created by the transfer."""
    missing = []
    parent = os.path.dirname(path)
    root = os.path.abspath(dest_dir)
    while parent != root and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        os.mkdir(directory)
    return [os.path.relpath(d, root) for d in reversed(missing)]


def remove_created(dest_dir: str, transfer_id: str) -> list[str]:
    """Delete the files (and then the directories, if empty) the transfer recorded
    as created, its record and its work directory.  Returns the file names removed.
    Never raises for missing files."""
    state = read_state(dest_dir, transfer_id) or {}
    removed = []
    for name in state.get("created", []):
        try:
            os.unlink(confine_name(dest_dir, name))
            removed.append(name)
        except (FileNotFoundError, Invalid):
            pass
    for name in reversed(state.get("created_dirs", [])):
        try:
            os.rmdir(confine_name(dest_dir, name))
        except (OSError, Invalid):
            pass
    forget(dest_dir, transfer_id)
    return removed


def forget(dest_dir: str, transfer_id: str) -> None:
    """Delete the record and work directory (the received files stay)."""
    import shutil  # here: the stream receiver imports this module and must start fast

    for path in (state_path(dest_dir, transfer_id), state_path(dest_dir, transfer_id) + ".tmp"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    shutil.rmtree(work_dir(dest_dir, transfer_id), ignore_errors=True)


def received_file(dest_dir: str, name: str, digest: str) -> ReceivedFile:
    # imported here: the stream receiver uses this module and must start fast
    from virtsdk.transfer.base import ReceivedFile

    path = confine_name(dest_dir, name)
    return ReceivedFile(name=name, path=path, size=os.path.getsize(path),
                        allocated=allocated_bytes(path), digest=digest)
