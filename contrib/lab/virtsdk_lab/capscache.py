"""Share libvirt's QEMU capabilities cache between lab hosts and between labs.

Every fresh libvirtd probes each QEMU binary on first use (about 8 s here, on the
first ``getCapabilities`` or domain start), and every lab host starts with an empty
``/var/cache/libvirt``.  The lab keeps one copy of the probe results in
``<root>/.qemu-capabilities`` and seeds each new host with it; libvirt itself checks
each cached file against the binaries, the kernel and the CPU and re-probes if it is
out of date, so a stale copy costs time, never correctness.  Called by
:meth:`Lab.up` / :meth:`Lab.down` in the root namespace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from virtsdk_lab.host import LabHost

SHARED_DIRNAME = ".qemu-capabilities"


def shared_dir(root: Path) -> Path:
    return root / SHARED_DIRNAME


def host_dir(host: LabHost) -> Path:
    """What ``host`` sees as ``/var/cache/libvirt/qemu/capabilities``."""
    return host.host_dir / "cache" / "qemu" / "capabilities"


def has_entries(root: Path) -> bool:
    return any(shared_dir(root).glob("*.xml"))


def seed(host: LabHost, root: Path) -> int:
    """Copy the shared probe results into ``host``'s cache (before its libvirtd starts)."""
    source = shared_dir(root)
    files = sorted(source.glob("*.xml")) if source.is_dir() else []
    if not files:
        return 0
    target = host_dir(host)
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy2(path, target / path.name)
    return len(files)


def harvest(host: LabHost, root: Path) -> int:
    """Copy ``host``'s probe results into the shared cache where they differ."""
    source = host_dir(host)
    files = sorted(source.glob("*.xml")) if source.is_dir() else []
    target = shared_dir(root)
    copied = 0
    for path in files:
        dest = target / path.name
        data = path.read_bytes()
        if dest.exists() and dest.read_bytes() == data:
            continue
        target.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
        copied += 1
    return copied


def prime(host: LabHost) -> None:
    """Make ``host``'s libvirtd probe every QEMU binary now (blocks until done)."""
    import libvirt

    conn = libvirt.open(host.libvirt_uri)
    try:
        conn.getCapabilities()
    finally:
        conn.close()
