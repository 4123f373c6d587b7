"""The observation hooks of the QEMU driver (read by the conformance kit only).

What this host really holds, found without the driver's own bookkeeping where it can
be: the QEMU processes in ``/proc`` whose QMP socket is this host's (tag) under this
host's instances directory, their QMP ``query-status``; every process and file of an
instance's directories; the bytes of its root disk (``vda``).

The marker goes 1 MiB into the root disk, a place the guest does not use (as in the
libvirt driver).  While QEMU runs, it is written and read through QEMU's own block
layer (HMP ``qemu-io`` on the drive, sent with QMP ``human-monitor-command``: no
second writer on the image) and read back from the file after QEMU flushed it;
while it is stopped, ``qemu-io`` opens the image itself.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oslo_concurrency import processutils

from virtsdk.driver import DiskObservation
from virtsdk.exceptions import InstanceNotFound
from virtsdk.objects import Instance
from virtsdk.states import PowerState
from virtsdk.transfer.images import image_info
from virtsdk_qemu.guest import DiskDevice, Guest, GuestError
from virtsdk_qemu.host import QemuHost
from virtsdk_qemu.qmp import QmpCommandError, QmpSocket, QmpUnavailable

#: where the marker goes on the root disk (bytes from its start)
MARKER_OFFSET = 1024 * 1024
ROOT_TARGET = "vda"
_HEX_LINE = re.compile(r"^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ){1,16})")


@dataclass(frozen=True)
class QemuProcess:
    """One process of this machine: pid and argument list."""

    pid: int
    argv: list[str]

    def option(self, name: str) -> str | None:
        """The value following ``name`` in the argument list, if any."""
        for i, arg in enumerate(self.argv[:-1]):
            if arg == name:
                return self.argv[i + 1]
        return None

    def qmp_socket(self) -> Path | None:
        """The path of a ``-qmp unix:<path>,...`` socket."""
        value = self.option("-qmp")
        if not value or not value.startswith("unix:"):
            return None
        return Path(value.removeprefix("unix:").split(",", 1)[0])


def processes() -> list[QemuProcess]:
    """Every live process of this machine with its arguments (zombies and processes
    gone while listing are left out)."""
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if raw:
            out.append(QemuProcess(int(entry), [a.decode(errors="replace")
                                                for a in raw.split(b"\0")[:-1]]))
    return out


def own_socket(drv: QemuHost, proc: QemuProcess) -> Path | None:
    """The QMP socket of ``proc`` if it is a QEMU of this host: socket named with this
    host's tag, in a directory right under this host's instances directory."""
    sock = proc.qmp_socket()
    if sock is None or sock.name != f"{drv.tag}.qmp":
        return None
    return sock if sock.parent.parent == drv.paths.root else None


#: seconds a QEMU whose QMP socket is gone is given to exit before it counts as a copy
EXIT_WAIT_S = 3.0


def ending(pid: int, sock: Path, wait: float = EXIT_WAIT_S) -> bool:
    """True when process ``pid`` has ended or is ending: gone, a zombie, or gone within
    ``wait`` seconds once its QMP socket has disappeared (QEMU removes it as it quits:
    a source that just finished a migration is on its way out, not a paused copy).  A
    QEMU that keeps its socket but does not answer is not ending."""
    deadline = time.monotonic() + (0.0 if sock.exists() else wait)
    while True:
        try:
            # the state follows the command name, which may itself hold ")"
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):  # a zombie, or dead
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def guests(drv: QemuHost, qmp_timeout: float) -> dict[str, PowerState]:
    """uuid -> RUNNING / PAUSED of every QEMU process of this host.  A process that
    does not run its guest (paused, waiting for a migration, finished one, or not
    answering on QMP) still holds it in memory: PAUSED."""
    out: dict[str, PowerState] = {}
    for proc in processes():
        sock = own_socket(drv, proc)
        uuid = proc.option("-uuid")
        if sock is None or uuid is None:
            continue
        try:
            status = QmpSocket(sock, qmp_timeout).execute("query-status")
            running = status.get("status") == "running"
        except (QmpUnavailable, QmpCommandError):
            if ending(proc.pid, sock):
                continue  # it ended, or is ending, while we asked
            running = False
        if out.get(uuid) != PowerState.RUNNING:
            out[uuid] = PowerState.RUNNING if running else PowerState.PAUSED
    return out


def footprint(drv: QemuHost, instance: Instance) -> list[str]:
    """Every process of this host working on the instance's directories (its QEMU,
    a disk receiver, ``qemu-img``) and every file in them."""
    dirs = [drv.paths.instance_dir(instance), drv.paths.resize_dir(instance)]
    out = []
    for proc in processes():
        sock = proc.qmp_socket()
        if sock is not None and sock.name != f"{drv.tag}.qmp":
            continue  # another host's QEMU next to shared files
        if any(str(d) in arg for d in dirs for arg in proc.argv):
            out.append(f"process {proc.pid} ({Path(proc.argv[0]).name})")
    for directory in dirs:
        if directory.is_dir():
            out += [str(p) for p in sorted(directory.rglob("*")) if p.is_file()]
    return out


def _root(drv: QemuHost, instance: Instance) -> tuple[Guest, DiskDevice]:
    """This host's guest of ``instance`` and its root disk (the file in the guest's
    directory: a kept ``_resize`` copy's definition names the directory it left)."""
    guest = drv.existing(instance)
    try:
        disks = guest.spec().disks
    except GuestError:
        raise InstanceNotFound(instance.uuid, drv.host) from None
    for disk in disks:
        if disk.target == ROOT_TARGET:
            return guest, DiskDevice(disk.target, str(guest.dir / Path(disk.path).name),
                                     disk.fmt)
    raise InstanceNotFound(instance.uuid, drv.host)


def _hmp_qemu_io(guest: Guest, commands: list[str]) -> list[str]:
    """Run ``qemu-io`` commands on the root drive inside the running QEMU; the
    monitor's reply to each (errors of the monitor command itself)."""
    calls: list[tuple[str, dict[str, Any] | None]] = [
        ("human-monitor-command",
         {"command-line": f'qemu-io {ROOT_TARGET} "{cmd}"'}) for cmd in commands]
    return [str(text) for text in guest.qmp.execute_all(calls)]


def write_marker(drv: QemuHost, instance: Instance, marker: bytes) -> None:
    """``marker`` at :data:`MARKER_OFFSET` of the root disk, one byte per write."""
    guest, disk = _root(drv, instance)
    cmds = [f"write -q -P 0x{b:02x} {MARKER_OFFSET + i} 1" for i, b in enumerate(marker)]
    if guest.is_running():
        errors = [t for t in _hmp_qemu_io(guest, [*cmds, "flush"]) if t.strip()]
        if errors:
            raise GuestError(f"writing the marker through QEMU failed: {errors[0][:200]}")
        return
    args: list[str] = []
    for cmd in cmds:
        args += ["-c", cmd]
    processutils.execute("qemu-io", "-f", disk.fmt, *args, disk.path)


def _hex_bytes(text: str) -> bytes:
    data = bytearray()
    for line in text.splitlines():
        m = _HEX_LINE.match(line.strip())
        if m:
            data += bytes.fromhex(m.group(1).replace(" ", ""))
    return bytes(data)


def read_disk(drv: QemuHost, instance: Instance, length: int) -> DiskObservation:
    """The marker place and the virtual size of the root disk.  While QEMU runs it
    flushes the drive and reports the size (``query-block``); the bytes are read from
    the image file (``qemu-io --force-share`` read-only: HMP ``qemu-io`` prints its
    output on QEMU's stdout, not in the monitor's reply)."""
    guest, disk = _root(drv, instance)
    size: int | None = None
    if guest.is_running():  # QEMU's caches to the file first, then read it shared
        _hmp_qemu_io(guest, ["flush"])
        for block in guest.qmp.execute("query-block"):
            if block.get("device") == ROOT_TARGET and "inserted" in block:
                size = int(block["inserted"]["image"]["virtual-size"])
    text, _err = processutils.execute("qemu-io", "-r", "-U", "-f", disk.fmt, "-c",
                                      f"read -v {MARKER_OFFSET} {length}", disk.path)
    if size is None:
        size = image_info(disk.path).virtual_size
    data = _hex_bytes(text)
    if len(data) < length:
        raise GuestError(f"reading the marker place of {instance.uuid} failed: "
                         f"{text.strip()[:200]}")
    return DiskObservation(marker=data[:length], size=size)
