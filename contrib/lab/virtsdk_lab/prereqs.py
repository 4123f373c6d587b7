"""What the lab needs from the machine, and what is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# binary -> Debian package that provides it
REQUIRED_BINARIES = {
    "libvirtd": "libvirt-daemon",
    "virtlogd": "libvirt-daemon",
    "virsh": "libvirt-clients",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "ip": "iproute2",
    "tc": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "hostname": "hostname",
}
GUEST_BINARIES = {
    "busybox": "busybox-static",
    "cpio": "cpio",
    "dpkg": "dpkg",
    "apt-get": "apt",
}
QEMU_DRIVER = Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so")


def check_prerequisites(with_guest: bool = True) -> list[str]:
    """Return one human-readable line per missing prerequisite (empty: all present).

    Called by :meth:`Lab.up`, the pytest ``lab`` fixture and ``virtsdk lab status``
    before anything is changed on the machine.  ``with_guest`` also checks the tools
    the test guest build needs.
    """
    missing: list[str] = []
    if os.geteuid() != 0:
        missing.append("root: the lab creates namespaces, bridges and mounts (run as root)")
    wanted = dict(REQUIRED_BINARIES)
    if with_guest:
        wanted.update(GUEST_BINARIES)
    for binary, package in wanted.items():
        if shutil.which(binary) is None and not _in_sbin(binary):
            missing.append(f"binary {binary!r} (Debian package {package})")
    if not QEMU_DRIVER.exists() and shutil.which("libvirtd") is not None:
        missing.append(f"libvirt QEMU driver {QEMU_DRIVER} (libvirt-daemon-driver-qemu)")
    if not Path("/proc/self/ns/net").exists():
        missing.append("kernel support for network namespaces (/proc/self/ns/net)")
    if not Path("/sys/class/net").is_dir():
        missing.append("/sys/class/net (sysfs mounted)")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        missing.append("Python module 'libvirt' (pip install libvirt-python)")
    return missing


def _in_sbin(binary: str) -> bool:
    return any(Path(d, binary).exists() for d in ("/usr/sbin", "/sbin"))
