"""One guest: its persisted definition and the QEMU process that runs it.

Everything about a guest lives in its instance directory::

    guest-<tag>.json  the definition (:class:`GuestSpec`) and the last command line
    <tag>.qmp         QEMU's QMP socket (server; one client at a time)
    qemu-<tag>.pid    QEMU's pid file (QEMU runs daemonized and outlives the driver)
    console.log       the serial console, appended to across restarts and migrations
    disk ...          disks (see :mod:`virtsdk.localdisk.disks`)

``<tag>`` (:func:`host_tag`) names the host: where hosts share the instances directory
the source's and the destination's QEMU of one live migration each keep their own
definition, socket and pid file next to the same disks and console log.

A new driver object (a restarted compute service) finds its guests from these files
alone: the definition tells it what to start, the pid file and the QMP socket whether
it runs.  A guest whose process is gone is a stopped guest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oslo_concurrency import processutils

from virtsdk.exceptions import Invalid, VirtSDKError
from virtsdk.states import PowerState
from virtsdk_qemu.qmp import QmpCommandError, QmpSocket, QmpUnavailable

LOG = logging.getLogger(__name__)

CONSOLE_LOG = "console.log"


def host_tag(host: str) -> str:
    """A short, file-name-safe tag of a host name (8 hex digits of its SHA-256)."""
    return hashlib.sha256(host.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class GuestFiles:
    """The per-host files of one guest in ``dir``."""

    dir: Path
    tag: str

    @property
    def definition(self) -> Path:
        return self.dir / f"guest-{self.tag}.json"

    @property
    def qmp(self) -> Path:
        return self.dir / f"{self.tag}.qmp"

    @property
    def pidfile(self) -> Path:
        return self.dir / f"qemu-{self.tag}.pid"

    @property
    def console(self) -> Path:
        return self.dir / CONSOLE_LOG

#: QMP ``query-status`` states and the power state they report
_STATES: dict[str, PowerState] = {
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "inmigrate": PowerState.PAUSED,
    "postmigrate": PowerState.PAUSED,
    "finish-migrate": PowerState.PAUSED,
    "prelaunch": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,
    "shutdown": PowerState.SHUTDOWN,
    "guest-panicked": PowerState.CRASHED,
    "internal-error": PowerState.CRASHED,
    "io-error": PowerState.PAUSED,
    "watchdog": PowerState.PAUSED,
    "colo": PowerState.PAUSED,
    "restore-vm": PowerState.PAUSED,
    "save-vm": PowerState.PAUSED,
    "debug": PowerState.PAUSED,
}


class GuestError(VirtSDKError):
    """QEMU did not start or stop as asked."""


@dataclass
class DiskDevice:
    """One virtio disk: ``path`` (absolute, in the instance directory), its format."""

    target: str
    path: str
    fmt: str


@dataclass
class GuestSpec:
    """What QEMU runs for one instance; persisted as ``guest.json``."""

    uuid: str
    name: str
    memory_mb: int
    vcpus: int
    emulator: str
    accel: str
    machine: str
    vnc_listen: str
    disk_cache: str
    disks: list[DiskDevice] = field(default_factory=list)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    flavor_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuestSpec:
        values = dict(data)
        values["disks"] = [DiskDevice(**d) for d in data.get("disks", [])]
        return cls(**values)


def command_line(spec: GuestSpec, files: GuestFiles) -> list[str]:
    """QEMU's argument list for ``spec`` (no ``-incoming``; see :meth:`Guest.start`).

    The VNC server listens on ``spec.vnc_listen`` (this host's address: a migrated
    guest gets the destination's address from the destination's own command line).
    """
    accel = spec.accel
    argv = [
        spec.emulator,
        "-name", f"guest={spec.name},debug-threads=on",
        "-uuid", spec.uuid,
        "-machine", f"{spec.machine},accel={accel}",
        "-cpu", "host" if accel == "kvm" else "max,migratable=on",
        "-m", f"{spec.memory_mb}M",
        "-smp", str(spec.vcpus),
        "-nodefaults", "-no-user-config",
        "-display", "none",
        "-vnc", f"{spec.vnc_listen}:0,to=99",
        "-chardev", f"file,id=console0,path={files.console},append=on",
        "-serial", "chardev:console0",
        "-qmp", f"unix:{files.qmp},server=on,wait=off",
        "-pidfile", str(files.pidfile),
        "-nic", "none",
        "-daemonize",
    ]
    if spec.kernel:
        argv += ["-kernel", spec.kernel]
    if spec.initrd:
        argv += ["-initrd", spec.initrd]
    if spec.cmdline:
        argv += ["-append", spec.cmdline]
    for disk in spec.disks:
        if "," in disk.path:
            raise Invalid(f"disk path {disk.path!r} contains a comma")
        argv += ["-drive", f"file={disk.path},format={disk.fmt},if=virtio,"
                           f"cache={spec.disk_cache},id={disk.target},"
                           f"node-name=drive-{disk.target}"]
    return argv


class Guest:
    """This host's guest whose files are in ``inst_dir``.  Holds no state of its own
    beyond the paths: every question is answered from the files and from QEMU."""

    def __init__(self, inst_dir: Path, tag: str, qmp_timeout: float,
                 exec_prefix: list[str]) -> None:
        self.dir = inst_dir
        self.files = GuestFiles(inst_dir, tag)
        self.qmp = QmpSocket(self.files.qmp, qmp_timeout)
        self.timeout = qmp_timeout
        self.exec_prefix = exec_prefix

    # -- definition ----------------------------------------------------------------------

    def defined(self) -> bool:
        return self.files.definition.is_file()

    def spec(self) -> GuestSpec:
        try:
            data = json.loads(self.files.definition.read_text(encoding="utf-8"))
            return GuestSpec.from_dict(data["spec"])
        except FileNotFoundError:
            raise GuestError(f"no guest is defined in {self.dir}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise GuestError(f"{self.files.definition} is damaged: {exc}") from None

    def define(self, spec: GuestSpec) -> None:
        """Persist ``spec`` and its command line (written whole, then renamed)."""
        data = {"spec": spec.to_dict(), "argv": command_line(spec, self.files)}
        target = self.files.definition
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, target)

    def undefine(self) -> None:
        """Forget the definition (the guest must be stopped)."""
        self.files.definition.unlink(missing_ok=True)

    # -- process -------------------------------------------------------------------------

    def pid(self) -> int | None:
        """QEMU's pid if it runs for this guest (checked against its command line,
        so a reused pid is not mistaken for it)."""
        try:
            pid = int(self.files.pidfile.read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.files.qmp).encode() in cmd else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def power_state(self) -> PowerState:
        if not self.is_running():
            return PowerState.SHUTDOWN
        try:
            status = self.qmp.execute("query-status")
        except QmpUnavailable:
            return PowerState.SHUTDOWN if not self.is_running() else PowerState.NOSTATE
        return _STATES.get(str(status.get("status")), PowerState.NOSTATE)

    def start(self, incoming: bool = False, paused: bool = False) -> None:
        """Start QEMU daemonized for the persisted definition; with ``incoming`` it
        waits for a live migration (``-incoming defer``); with ``paused`` the guest
        does not run until ``cont``.  Returns once QMP answers."""
        if self.is_running():
            return
        spec = self.spec()
        self.qmp.check_path()
        argv = command_line(spec, self.files)
        if incoming:
            argv += ["-incoming", "defer"]
        if paused:
            argv += ["-S"]
        for stale in (self.files.qmp, self.files.pidfile):
            stale.unlink(missing_ok=True)
        self.files.console.touch()
        try:
            processutils.execute(*self.exec_prefix, *argv)
        except processutils.ProcessExecutionError as exc:
            raise GuestError(f"QEMU did not start for {spec.uuid}: "
                             f"{(exc.stderr or '').strip()[-400:]}") from None
        deadline = time.monotonic() + self.timeout
        while not self.qmp.answers():
            if time.monotonic() > deadline or not self.is_running():
                self.kill()
                raise GuestError(f"QEMU of {spec.uuid} did not answer on QMP")
            time.sleep(0.05)

    def wait_stopped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def kill(self) -> None:
        """Stop QEMU now: QMP ``quit``, SIGKILL if it does not go.  No-op if not
        running."""
        if not self.is_running():
            return
        try:
            self.qmp.execute("quit")
        except (QmpUnavailable, QmpCommandError):
            pass
        if not self.wait_stopped(5.0):
            pid = self.pid()
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not self.wait_stopped(10.0):
                raise GuestError(f"QEMU in {self.dir} does not stop")
        self.files.qmp.unlink(missing_ok=True)
        self.files.pidfile.unlink(missing_ok=True)

    def power_off(self, timeout: int, retry_interval: int) -> None:
        """Press the ACPI power button every ``retry_interval`` s for up to ``timeout``
        s, then stop QEMU.  Returns with the guest off."""
        deadline = time.monotonic() + timeout
        while timeout and self.is_running() and time.monotonic() < deadline:
            try:
                self.qmp.execute("system_powerdown")
            except (QmpUnavailable, QmpCommandError):
                break
            if self.wait_stopped(min(retry_interval, max(0.0, deadline - time.monotonic()))):
                return
        self.kill()
