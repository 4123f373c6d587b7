"""The observation hooks of the libvirt driver (read by the conformance kit only).

What libvirt and the instances directory really hold: active domains and their state,
the domain definition and every file of an instance, and the bytes of its root disk.
The marker goes 1 MiB into the root disk (``vda``), a place the guest does not use.
While the domain runs, the marker is written through the running QEMU's block layer
(the HMP ``qemu-io`` command: no second writer on the image) and QEMU flushes before
the file is read with ``qemu-io --force-share`` read-only; while it is off,
``qemu-io`` opens the image file itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import libvirt
import libvirt_qemu
from oslo_concurrency import processutils

from virtsdk.driver import DiskObservation
from virtsdk.exceptions import InstanceNotFound
from virtsdk.objects import Instance
from virtsdk.states import PowerState
from virtsdk.transfer.images import image_info
from virtsdk_libvirt import guest_config, xmlutil
from virtsdk_libvirt.host import is_not_found
from virtsdk_libvirt.paths import InstancePaths


class ObservedDriver(Protocol):
    """What these hooks use of :class:`virtsdk_libvirt.driver.LibvirtDriver`."""

    host: str
    _paths: InstancePaths

    @property
    def _conn(self) -> libvirt.virConnect: ...

    def _find(self, instance: Instance) -> libvirt.virDomain | None: ...

    def _lookup(self, instance: Instance) -> libvirt.virDomain: ...

MARKER_OFFSET = 1024 * 1024
_HEX_LINE = re.compile(r"^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ){1,16})")


def guests(drv: ObservedDriver) -> dict[str, PowerState]:
    """uuid -> RUNNING / PAUSED of every active domain of this host."""
    out = {}
    for dom in drv._conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            state = dom.state()[0]
            uuid = dom.UUIDString()
        except libvirt.libvirtError as exc:
            if is_not_found(exc):  # gone since the listing (a migration ending)
                continue
            raise
        if state == libvirt.VIR_DOMAIN_RUNNING:
            out[uuid] = PowerState.RUNNING
        elif state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
            out[uuid] = PowerState.PAUSED
    return out


def footprint(drv: ObservedDriver, instance: Instance) -> list[str]:
    """The domain (if libvirt has one) and every file of the instance here."""
    out = []
    dom = drv._find(instance)
    if dom is not None:
        try:
            out.append(f"domain {dom.name()} ({'active' if dom.isActive() else 'defined'})")
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise
    for directory in (drv._paths.instance_dir(instance), drv._paths.resize_dir(instance)):
        if directory.is_dir():
            out += [str(p) for p in sorted(directory.rglob("*")) if p.is_file()]
    return out


def _root(drv: ObservedDriver, instance: Instance) -> tuple[libvirt.virDomain, str, str, str]:
    """(domain, qdev id, file, format) of the instance's root disk."""
    dom = drv._lookup(instance)
    tree = xmlutil.parse(dom.XMLDesc(0))
    for target, source, fmt in guest_config.disk_sources(tree):
        if target == "vda":
            alias = tree.find("devices/disk/target[@dev='vda']/../alias")
            qdev = alias.get("name", "virtio-disk0") if alias is not None else "virtio-disk0"
            return dom, qdev, source, fmt
    raise InstanceNotFound(instance.uuid, drv.host)


def _hmp(dom: libvirt.virDomain, qdev: str, command: str) -> str:
    out: str = libvirt_qemu.qemuMonitorCommand(
        dom, f'qemu-io -d /machine/peripheral/{qdev}/virtio-backend "{command}"',
        libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
    return out


def write_marker(drv: ObservedDriver, instance: Instance, marker: bytes) -> None:
    dom, qdev, path, fmt = _root(drv, instance)
    cmds = [f"write -q -P 0x{b:02x} {MARKER_OFFSET + i} 1" for i, b in enumerate(marker)]
    if dom.isActive():
        for cmd in cmds:
            _hmp(dom, qdev, cmd)
        _hmp(dom, qdev, "flush")
        return
    args: list[str] = []
    for cmd in cmds:
        args += ["-c", cmd]
    processutils.execute("qemu-io", "-f", fmt, *args, path)


def read_disk(drv: ObservedDriver, instance: Instance, length: int) -> DiskObservation:
    dom, qdev, path, fmt = _root(drv, instance)
    if dom.isActive():  # QEMU's caches to the file first; then read it shared
        _hmp(dom, qdev, "flush")
    text, _err = processutils.execute("qemu-io", "-r", "-U", "-f", fmt, "-c",
                                      f"read -v {MARKER_OFFSET} {length}", path)
    data = bytearray()
    for line in text.splitlines():
        m = _HEX_LINE.match(line.strip())
        if m:
            data += bytes.fromhex(m.group(1).replace(" ", ""))
    return DiskObservation(marker=bytes(data[:length]),
                           size=image_info(Path(path)).virtual_size)
