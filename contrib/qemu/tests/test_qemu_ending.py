"""A QEMU on its way out is not a paused copy: ``observe.ending`` on real processes."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from virtsdk_qemu.observe import ending


def test_a_process_that_keeps_its_socket_is_not_ending(tmp_path: Path) -> None:
    sock = tmp_path / "x.qmp"
    sock.touch()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not ending(proc.pid, sock)
        # its socket gone, yet still alive after the wait: a copy, not an exit
        sock.unlink()
        assert not ending(proc.pid, sock, wait=0.2)
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_or_a_gone_process_is_ending(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    proc.send_signal(signal.SIGKILL)
    try:
        # killed, not reaped yet (or already gone): either way it is ending
        assert ending(proc.pid, tmp_path / "gone.qmp", wait=5.0)
    finally:
        proc.wait()
    assert ending(proc.pid, tmp_path / "gone.qmp", wait=0.0)
