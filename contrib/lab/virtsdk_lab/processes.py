"""Find and stop the processes that belong to a lab host.

A host's processes (virtlogd, libvirtd, every QEMU it spawns, anything a test ran
with the host's ``exec_prefix``) all live in the host's network namespace, so the
namespace is the one handle that finds them all, even after the lab's own process
was killed.  Used by :meth:`Lab.down` and by the leftover check of the test suite.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

TERM_GRACE_S = 5.0
KILL_GRACE_S = 5.0
POLL_S = 0.05


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pids_in_netns_inode(inode: int) -> list[int]:
    """Every live process whose network namespace has inode ``inode``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == inode:
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(pid for pid in found if alive(pid))


def describe(pid: int) -> str:
    """``pid`` and its command line, for error messages."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmd = "?"
    return f"{pid} {cmd.strip()[:120]}"


def terminate(pids: list[int]) -> list[int]:
    """SIGTERM ``pids``, wait, SIGKILL whatever is left; return those still alive."""
    for sig, grace in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        remaining = [pid for pid in pids if alive(pid)]
        for pid in remaining:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while remaining and time.monotonic() < deadline:
            time.sleep(POLL_S)
            remaining = [pid for pid in remaining if alive(pid)]
        if not remaining:
            return []
    return [pid for pid in pids if alive(pid)]
