"""Build the libvirt domain XML of an instance (with lxml, never by string pasting).

Called by ``LibvirtDriver.spawn`` and by ``finish_migration`` on the host that will run
the guest.  Pure: takes a :class:`GuestSpec` (everything already resolved to local
paths) and returns an element tree; it touches neither libvirt nor the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from virtsdk.exceptions import Invalid
from virtsdk.objects import Flavor, Instance, NetworkInfo
from virtsdk.validation import validate_hostname

METADATA_NS = "https://virtsdk.dev/xmlns/libvirt/instance/1.0"


@dataclass
class DiskSpec:
    """One file-backed disk: ``path`` is absolute on this host, ``fmt`` is
    ``qcow2`` or ``raw``, ``target`` the guest device (``vda``...)."""

    path: str
    fmt: str
    target: str
    bus: str = "virtio"


@dataclass
class GuestSpec:
    """Everything needed to describe one guest on this host."""

    instance: Instance
    flavor: Flavor
    virt_type: str
    disks: list[DiskSpec]
    console_log: str
    listen_address: str
    cpu_mode: str = "maximum"
    disk_cachemode: str = "none"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    network_info: NetworkInfo = field(default_factory=NetworkInfo)


def _sub(parent: etree._Element, tag: str, text: str | None = None,
         **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def build_domain(spec: GuestSpec) -> etree._Element:
    """The ``<domain>`` element for ``spec``.

    Raises Invalid for a virt type, disk format or listen address that cannot be
    right (the address is validated: it ends up in QEMU's command line).
    """
    if spec.virt_type not in ("qemu", "kvm"):
        raise Invalid(f"unsupported virt_type {spec.virt_type!r}")
    validate_hostname(spec.listen_address)
    inst, flavor = spec.instance, spec.flavor
    dom = etree.Element("domain", type=spec.virt_type)
    _sub(dom, "name", inst.name)
    _sub(dom, "uuid", inst.uuid)
    _metadata(dom, inst, flavor)
    _sub(dom, "memory", str(flavor.memory_mb), unit="MiB")
    _sub(dom, "currentMemory", str(flavor.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(flavor.vcpus))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        _sub(os_el, "cmdline", spec.cmdline or "console=ttyS0")
    else:
        _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.cpu_mode in ("maximum", "host-passthrough"):
        _sub(dom, "cpu", mode=spec.cpu_mode, migratable="on")
    elif spec.cpu_mode != "none":
        _sub(dom, "cpu", mode=spec.cpu_mode)
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    for disk in spec.disks:
        _disk(devices, disk, spec.disk_cachemode)
    for vif in spec.network_info.vifs:
        iface = _sub(devices, "interface", type="user")
        _sub(iface, "mac", address=vif.address)
        _sub(iface, "model", type="virtio")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=spec.console_log, append="on")
    _sub(serial, "target", port="0")
    graphics = _sub(devices, "graphics", type="vnc", autoport="yes",
                    listen=spec.listen_address)
    _sub(graphics, "listen", type="address", address=spec.listen_address)
    _sub(devices, "memballoon", model="virtio")
    return dom


def _disk(devices: etree._Element, disk: DiskSpec, cachemode: str) -> None:
    if disk.fmt not in ("qcow2", "raw"):
        raise Invalid(f"unsupported disk format {disk.fmt!r} for {disk.path}")
    el = _sub(devices, "disk", type="file", device="disk")
    _sub(el, "driver", name="qemu", type=disk.fmt, cache=cachemode)
    _sub(el, "source", file=disk.path)
    _sub(el, "target", dev=disk.target, bus=disk.bus)


def _metadata(dom: etree._Element, inst: Instance, flavor: Flavor) -> None:
    meta = _sub(dom, "metadata")
    own = etree.SubElement(meta, f"{{{METADATA_NS}}}instance", nsmap={"virtsdk": METADATA_NS})
    etree.SubElement(own, f"{{{METADATA_NS}}}flavor", {
        "name": flavor.name, "memory_mb": str(flavor.memory_mb),
        "vcpus": str(flavor.vcpus), "root_gb": str(flavor.root_gb),
        "ephemeral_gb": str(flavor.ephemeral_gb)})


def disk_sources(domain: etree._Element) -> list[tuple[str, str, str]]:
    """``(target dev, source file, format)`` of every file-backed disk of a parsed
    domain (``xmlutil.parse(dom.XMLDesc())``), in definition order."""
    out = []
    for disk in domain.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        target = disk.find("target")
        driver = disk.find("driver")
        if source is None or source.get("file") is None or target is None:
            continue
        fmt = driver.get("type", "raw") if driver is not None else "raw"
        out.append((target.get("dev", ""), source.get("file", ""), fmt))
    return out
