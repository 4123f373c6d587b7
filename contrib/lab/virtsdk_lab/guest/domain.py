"""A minimal libvirt domain for the test guest (the lab's own tests and demos).

The libvirt driver builds its own domain XML; this one exists so the lab can prove
on its own that the guest boots, keeps a disk marker and migrates.  It encodes what
works under emulation on this kind of machine: domain type ``qemu`` (not KVM), CPU
``mode='maximum' migratable='on'``, direct kernel boot, serial console appended to a
file (so a migrated guest keeps writing to the same log).
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

from lxml import etree

from virtsdk_lab.guest.image import GuestImage


def demo_domain_xml(
    name: str,
    image: GuestImage,
    console_log: Path,
    *,
    disk: Path | None = None,
    disk_format: str = "raw",
    memory_mib: int = 256,
    cmdline: str | None = None,
    uuid: str | None = None,
) -> str:
    """Domain XML booting ``image`` with an optional virtio ``disk`` (becomes /dev/vda).

    ``cmdline`` defaults to ``image.cmdline()``.  The disk uses ``cache='none'`` so
    libvirt accepts live migration with it on storage both hosts see.
    """
    if disk_format not in ("raw", "qcow2"):
        raise ValueError(f"disk_format must be 'raw' or 'qcow2', got {disk_format!r}")
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = uuid or str(uuidlib.uuid4())
    etree.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    etree.SubElement(dom, "vcpu").text = "1"
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    etree.SubElement(os_el, "kernel").text = str(image.kernel)
    etree.SubElement(os_el, "initrd").text = str(image.initrd)
    etree.SubElement(os_el, "cmdline").text = cmdline if cmdline is not None else image.cmdline()
    features = etree.SubElement(dom, "features")
    etree.SubElement(features, "acpi")
    etree.SubElement(dom, "cpu", mode="maximum", migratable="on")
    etree.SubElement(dom, "clock", offset="utc")
    etree.SubElement(dom, "on_poweroff").text = "destroy"
    etree.SubElement(dom, "on_reboot").text = "restart"
    etree.SubElement(dom, "on_crash").text = "destroy"
    devices = etree.SubElement(dom, "devices")
    etree.SubElement(devices, "emulator").text = "/usr/bin/qemu-system-x86_64"
    if disk is not None:
        disk_el = etree.SubElement(devices, "disk", type="file", device="disk")
        etree.SubElement(disk_el, "driver", name="qemu", type=disk_format, cache="none")
        etree.SubElement(disk_el, "source", file=str(disk))
        etree.SubElement(disk_el, "target", dev="vda", bus="virtio")
    serial = etree.SubElement(devices, "serial", type="file")
    etree.SubElement(serial, "source", path=str(console_log), append="on")
    etree.SubElement(serial, "target", port="0")
    etree.SubElement(devices, "memballoon", model="none")
    return etree.tostring(dom, pretty_print=True, encoding="unicode")
