"""Rewriting a migratable domain XML for the destination host.

Called on the source host by :mod:`virtsdk_libvirt.live_migration.migrate` between
``XMLDesc(MIGRATABLE | SECURE)`` and ``migrateToURI3``.  Everything the destination told
us (listen addresses, its instance directory, VIFs, volume connection info) arrives in
:class:`DestinationSpec`; it crossed hosts, so :func:`DestinationSpec.validated` checks it
first.  The functions here work on an already parsed tree (parse with the driver's
hardened parser, :mod:`virtsdk_libvirt.xmlutil`) and never touch libvirt or the disk.

What is rewritten (for what the driver creates):

* graphics listen addresses, VNC and SPICE: the ``listen`` attribute (when libvirt
  reads it: no ``<listen>`` child, or the first is ``type='address'``) and every
  ``<listen type='address'>`` child;
* serial / console / channel TCP sources that listen (``mode='bind'``; a source
  without ``mode`` connects out and is left alone): ``host`` and, when the
  destination reserved ports, ``service``;
* paths under the source's instance directory and image cache re-rooted to the
  destination's (:attr:`DestinationSpec.path_moves`): disk
  sources and backing stores, kernel / initrd / dtb, file-backed serial consoles and
  ``<log file=...>``;
* VIFs matched by MAC address;
* volume disks, from the destination's connection info.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from virtsdk.exceptions import Invalid, MigrationError
from virtsdk.objects import VIF, BlockDeviceMapping
from virtsdk.validation import validate_hostname

GRAPHICS_TYPES = ("vnc", "spice")


class ListenAddressError(MigrationError):
    """The source listens on an address the destination cannot take, and there is no
    destination address to rewrite it to."""


@dataclass(frozen=True)
class DestinationSpec:
    """What the destination host said about itself in ``pre_live_migration``."""

    vnc_listen: str | None = None
    spice_listen: str | None = None
    serial_listen: str | None = None
    serial_ports: tuple[int, ...] = ()
    #: (source directory, destination directory) pairs: the instance directory and
    #: the image cache differ between hosts that do not share storage.
    path_moves: tuple[tuple[str, str], ...] = ()
    vifs: tuple[VIF, ...] = ()
    volumes: tuple[BlockDeviceMapping, ...] = field(default=())

    def validated(self) -> DestinationSpec:
        """Return self after checking every value that came from the other host.

        Raises :class:`virtsdk.exceptions.Invalid` (addresses that are not a host
        name or IP, relative or non-normal directories, out-of-range ports).
        """
        for addr in (self.vnc_listen, self.spice_listen, self.serial_listen):
            if addr is not None:
                validate_hostname(addr)
        for port in self.serial_ports:
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise Invalid(f"invalid serial port {port!r} from the destination")
        for path in (p for pair in self.path_moves for p in pair):
            if path is not None and (
                not os.path.isabs(path) or os.path.normpath(path) != path or "\x00" in path
            ):
                raise Invalid(f"instance directory {path!r} is not a normal absolute path")
        return self

    def listen_for(self, gtype: str) -> str | None:
        return {"vnc": self.vnc_listen, "spice": self.spice_listen}.get(gtype)


def is_portable_address(addr: str | None) -> bool:
    """True if a guest listening on ``addr`` can be started on any host as it is:
    no address, a wildcard (``0.0.0.0``, ``::``) or loopback."""
    if not addr:
        return True
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr == "localhost"
    return ip.is_unspecified or ip.is_loopback


def _listen_attribute_applies(graphics: etree._Element) -> bool:
    """Whether libvirt reads the ``listen`` attribute of ``<graphics>``: only when the
    device has no ``<listen>`` child or its first one is ``type='address'`` (with a
    first ``type='network'``, ``'socket'`` or ``'none'`` child the attribute is a
    leftover libvirt ignores, kept for old clients)."""
    first = graphics.find("listen")
    return first is None or first.get("type") == "address"


def graphics_listen_addresses(root: etree._Element) -> dict[str, list[str]]:
    """Every address each graphics type listens on (attribute and children)."""
    out: dict[str, list[str]] = {}
    for gr in root.iterfind("./devices/graphics"):
        gtype = gr.get("type", "")
        addrs = out.setdefault(gtype, [])
        if gr.get("listen") and _listen_attribute_applies(gr):
            addrs.append(gr.get("listen", ""))
        for listen in gr.iterfind("listen"):
            if listen.get("type") == "address" and listen.get("address"):
                addrs.append(listen.get("address", ""))
    return out


def serial_listen_addresses(root: etree._Element) -> list[str]:
    """Hosts that TCP serial/console devices bind to on the source."""
    out = []
    for dev in _tcp_char_devices(root):
        for src in dev.iterfind("source"):
            if _binds(src) and src.get("host"):
                out.append(src.get("host", ""))
    return out


def check_can_migrate_as_is(root: etree._Element) -> None:
    """Raise ListenAddressError unless the XML can start on another host unchanged.

    Used before the legacy migration call (which cannot carry a new XML) and whenever
    the destination gave no address for a device that listens on a specific one.
    """
    for gtype, addrs in graphics_listen_addresses(root).items():
        for addr in addrs:
            if not is_portable_address(addr):
                raise ListenAddressError(
                    f"{gtype} graphics listen on {addr}, an address of the source host; "
                    "the destination gave no listen address to rewrite it to, so the "
                    "guest could not start there"
                )
    for addr in serial_listen_addresses(root):
        if not is_portable_address(addr):
            raise ListenAddressError(
                f"a serial console listens on {addr}, an address of the source host; "
                "the destination gave no serial listen address to rewrite it to"
            )


def rewrite_graphics(root: etree._Element, spec: DestinationSpec) -> None:
    """Point VNC/SPICE listen addresses at the destination's.

    A device that listens on a portable address (wildcard, loopback) is left as is when
    the destination gave nothing; one bound to a source address without a destination
    address raises ListenAddressError.
    """
    for gr in root.iterfind("./devices/graphics"):
        gtype = gr.get("type", "")
        if gtype not in GRAPHICS_TYPES:
            continue
        new = spec.listen_for(gtype)
        listens = [el for el in gr.iterfind("listen") if el.get("type") == "address"]
        attribute = _listen_attribute_applies(gr)
        current = [gr.get("listen") if attribute else None]
        current += [el.get("address") for el in listens]
        if new is None:
            bad = [a for a in current if not is_portable_address(a)]
            if bad:
                raise ListenAddressError(
                    f"{gtype} graphics listen on {bad[0]}, an address of the source host, "
                    "and the destination gave no listen address for it"
                )
            continue
        if attribute and gr.get("listen") is not None:
            gr.set("listen", new)
        for el in listens:
            el.set("address", new)


def rewrite_serial(root: etree._Element, spec: DestinationSpec) -> None:
    """Point TCP serial/console sources (host, and port if reserved) at the destination.

    Serial devices take the reserved ports in order; a ``<console>`` whose target is a
    serial port mirrors the first serial device (libvirt describes that one device
    twice), any other console or channel takes the next port.
    """
    ports = list(spec.serial_ports)
    first_serial_port: str | None = None
    for dev in _tcp_char_devices(root):
        target = dev.find("target")
        mirrors_serial = (
            dev.tag == "console"
            and (target is None or target.get("type", "serial") == "serial")
        )
        for src in dev.iterfind("source"):
            if not _binds(src):
                continue
            host = src.get("host")
            if spec.serial_listen is not None:
                src.set("host", spec.serial_listen)
            elif not is_portable_address(host):
                raise ListenAddressError(
                    f"a serial console listens on {host}, an address of the source host, "
                    "and the destination gave no serial listen address"
                )
            if mirrors_serial and first_serial_port is not None:
                src.set("service", first_serial_port)
            elif ports:
                src.set("service", str(ports.pop(0)))
            if dev.tag == "serial" and first_serial_port is None:
                first_serial_port = src.get("service")


def reroot_paths(
    root: etree._Element, moves: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Move every path under a source directory to the same place under its
    destination directory (``moves`` is a list of ``(src_dir, dst_dir)``).

    Covers disk sources and backing stores, ``<os>`` kernel/initrd/dtb, file-backed
    serial/console sources and ``<log file>``.  Each path moves at most once, by the
    longest matching source directory.  Returns the ``(old, new)`` paths (for logging
    and tests).  Paths elsewhere (images shared by all hosts) are left alone.
    """
    pairs = sorted(
        ((s.rstrip("/"), d.rstrip("/")) for s, d in moves if s.rstrip("/") != d.rstrip("/")),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    changed: list[tuple[str, str]] = []

    def move(path: str | None) -> str | None:
        if not path:
            return None
        for src_dir, dst_dir in pairs:
            if path == src_dir or path.startswith(src_dir + "/"):
                new = dst_dir + path[len(src_dir):]
                changed.append((path, new))
                return new
        return None

    for src in root.iter("source"):
        for attr in ("file", "path"):
            new = move(src.get(attr))
            if new is not None:
                src.set(attr, new)
    for tag in ("kernel", "initrd", "dtb"):
        for el in root.iterfind(f"./os/{tag}"):
            new = move(el.text)
            if new is not None:
                el.text = new
    for log in root.iter("log"):
        new = move(log.get("file"))
        if new is not None:
            log.set("file", new)
    return changed


def paths_under(root: etree._Element, dirs: Iterable[str]) -> list[str]:
    """The paths :func:`reroot_paths` would move for these source directories."""
    probe = copy.deepcopy(root)
    return [old for old, _ in reroot_paths(probe, [(d, d.rstrip("/") + ".moved") for d in dirs])]


def rewrite_vifs(root: etree._Element, vifs: Iterable[VIF]) -> list[str]:
    """Update interfaces whose MAC matches one of ``vifs`` to the destination's wiring.

    ``vif.type`` ``bridge`` / ``network`` / ``ethernet`` / ``user`` becomes the
    interface type; ``details['bridge']``, ``details['network']`` set the source and
    ``details['dev']`` the target device.  Returns the MACs rewritten.
    """
    by_mac = {v.address.lower(): v for v in vifs}
    done = []
    for iface in root.iterfind("./devices/interface"):
        mac_el = iface.find("mac")
        if mac_el is None:
            continue
        vif = by_mac.get(mac_el.get("address", "").lower())
        if vif is None:
            continue
        if vif.type in ("bridge", "network", "ethernet", "user"):
            iface.set("type", vif.type)
        src = iface.find("source")
        if vif.type in ("bridge", "network"):
            if src is None:
                src = etree.SubElement(iface, "source")
            src.attrib.clear()
            key = vif.type
            value = vif.details.get(key) or (vif.network if key == "network" else "")
            if not value:
                raise Invalid(f"VIF {vif.address}: type {key} without a {key} name")
            src.set(key, value)
        elif src is not None:
            iface.remove(src)
        target = iface.find("target")
        if vif.details.get("dev"):
            if target is None:
                target = etree.SubElement(iface, "target")
            target.set("dev", vif.details["dev"])
        elif target is not None:
            iface.remove(target)  # the old tap name belongs to the source host
        done.append(mac_el.get("address", ""))
    return done


def rewrite_volumes(root: etree._Element, bdms: Iterable[BlockDeviceMapping]) -> list[str]:
    """Point volume disks at the destination's view of the same volume.

    ``connection_info['data']['device_path']`` (a block device or file on the
    destination) replaces the source of the disk whose target is ``device_name``.
    Returns the targets rewritten.
    """
    done = []
    for bdm in bdms:
        dev = os.path.basename(bdm.device_name)
        data: Mapping[str, Any] = bdm.connection_info.get("data", {})
        path = data.get("device_path")
        if not path:
            continue
        for disk in root.iterfind("./devices/disk"):
            target = disk.find("target")
            if target is None or target.get("dev") != dev:
                continue
            src = disk.find("source")
            if src is None:
                src = etree.SubElement(disk, "source")
            kind = "block" if str(path).startswith("/dev/") else "file"
            disk.set("type", kind)
            src.attrib.clear()
            src.set("dev" if kind == "block" else "file", str(path))
            done.append(dev)
    return done


def rewrite_for_destination(root: etree._Element, spec: DestinationSpec) -> etree._Element:
    """Apply every rewrite to ``root`` (in place) and return it.

    Raises ListenAddressError when a console is bound to a source address and the
    destination gave nothing to replace it with.
    """
    spec.validated()
    rewrite_graphics(root, spec)
    rewrite_serial(root, spec)
    reroot_paths(root, spec.path_moves)
    rewrite_vifs(root, spec.vifs)
    rewrite_volumes(root, spec.volumes)
    return root


def _binds(source: etree._Element) -> bool:
    """Whether a TCP character device ``<source>`` listens (``mode='bind'``); libvirt
    reads a missing ``mode`` as ``connect``: the guest dials out, nothing to move."""
    return bool(source.get("mode", "connect") == "bind")


def _tcp_char_devices(root: etree._Element) -> list[etree._Element]:
    return [
        dev
        for tag in ("serial", "console", "channel", "parallel")
        for dev in root.iterfind(f"./devices/{tag}")
        if dev.get("type") == "tcp"
    ]
