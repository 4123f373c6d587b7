"""One lab host: a network namespace with its own hostname, mounts and libvirtd.

:class:`LabHost` is what tests and drivers use: the address and libvirt URI to
connect to, the per-host instances directory (visible at the same path from the root
namespace), and a command prefix to run something *on* the host.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtsdk_lab import commands
from virtsdk_lab.processes import alive

LIBVIRT_TCP_PORT = 16509


@dataclass
class LabHost:
    """A libvirt host of a lab (created by :meth:`Lab.up`, never by tests directly).

    ``host_dir`` holds the host's private ``/etc/libvirt``, ``/var/lib/libvirt``,
    ``/var/log/libvirt`` and ``/var/cache/libvirt`` (bind-mounted inside its mount
    namespace) and ``instances/``.
    """

    name: str
    position: int
    address: str
    netns: str
    uuid: str
    host_dir: Path
    netns_inode: int | None = None

    @property
    def hostname(self) -> str:
        """The host's UTS hostname (same as :attr:`name`)."""
        return self.name

    @property
    def libvirt_uri(self) -> str:
        """URI a libvirt client in any namespace of this machine uses to reach the host."""
        return f"qemu+tcp://{self.address}/system"

    @property
    def instances_path(self) -> Path:
        """Per-host instances directory, writable by the test process and the host's QEMU."""
        return self.host_dir / "instances"

    @property
    def log_dir(self) -> Path:
        """What the host sees as ``/var/log/libvirt`` (libvirtd.log, qemu/<domain>.log)."""
        return self.host_dir / "log"

    @property
    def libvirtd_pidfile(self) -> Path:
        return self.host_dir / "libvirtd.pid"

    @property
    def virtlogd_pidfile(self) -> Path:
        return self.host_dir / "virtlogd.pid"

    @property
    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it in the host's network namespace.

        Enough for anything network-bound (a listener on :attr:`address`, ``nc`` to
        another host).  Processes started this way are stopped by :meth:`Lab.down`.
        """
        return ["ip", "netns", "exec", self.netns]

    @property
    def nsenter_prefix(self) -> list[str]:
        """Prepend to run a command fully *inside* the host: its network, hostname and
        mounts (its ``/etc/hosts``, ``/var/lib/libvirt``, ``/run``), via libvirtd's pid."""
        pid = self.libvirtd_pid()
        if pid is None:
            raise RuntimeError(f"libvirtd of {self.name} is not running")
        return ["nsenter", "-t", str(pid), "-m", "-u", "-n"]

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        input_data: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the host's network namespace and return its result.

        Called from the test process (root namespace); ``input_data`` is fed to its
        stdin.  With ``check`` a non-zero exit raises
        :class:`virtsdk_lab.errors.LabError` with the command's stderr.
        """
        return commands.run([*self.exec_prefix, *cmd], check=check, timeout=timeout,
                            input_data=input_data)

    def libvirtd_pid(self) -> int | None:
        """Pid of the host's libvirtd if it is running, else ``None``."""
        return _read_pid(self.libvirtd_pidfile)

    def virtlogd_pid(self) -> int | None:
        """Pid of the host's virtlogd if it is running, else ``None``."""
        return _read_pid(self.virtlogd_pidfile)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "address": self.address,
            "netns": self.netns,
            "uuid": self.uuid,
            "host_dir": str(self.host_dir),
            "netns_inode": self.netns_inode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabHost:
        return cls(
            name=str(data["name"]),
            position=int(data["position"]),
            address=str(data["address"]),
            netns=str(data["netns"]),
            uuid=str(data["uuid"]),
            host_dir=Path(data["host_dir"]),
            netns_inode=data.get("netns_inode"),
        )


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None
