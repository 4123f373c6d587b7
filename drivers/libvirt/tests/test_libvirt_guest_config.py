"""The domain XML: emulated CPU, file disks, console file, VNC on the host address."""

from __future__ import annotations

import pytest
from virtsdk_libvirt import guest_config, xmlutil
from virtsdk_libvirt.guest_config import DiskSpec, GuestSpec

from virtsdk.exceptions import Invalid, InvalidHostname
from virtsdk.objects import VIF, Flavor, Instance, NetworkInfo


def make_spec(**kw: object) -> GuestSpec:
    instance = Instance(name="vm-a", flavor=Flavor("m1", 256, 2, 1, ephemeral_gb=1))
    values: dict[str, object] = dict(
        instance=instance, flavor=instance.flavor, virt_type="qemu",
        disks=[DiskSpec("/i/u/disk", "qcow2", "vda"), DiskSpec("/i/u/disk.local", "raw", "vdb")],
        console_log="/i/u/console.log", listen_address="198.18.1.2",
        kernel="/c/k", initrd="/c/i", cmdline="console=ttyS0 quiet")
    values.update(kw)
    return GuestSpec(**values)  # type: ignore[arg-type]


def parsed(spec: GuestSpec):
    return xmlutil.parse(xmlutil.to_string(guest_config.build_domain(spec)))


def test_domain_basics() -> None:
    spec = make_spec()
    dom = parsed(spec)
    assert dom.get("type") == "qemu"
    assert dom.findtext("name") == "vm-a"
    assert dom.findtext("uuid") == spec.instance.uuid
    assert dom.find("memory").text == "256" and dom.find("memory").get("unit") == "MiB"
    assert dom.findtext("vcpu") == "2"
    cpu = dom.find("cpu")
    assert cpu.get("mode") == "maximum" and cpu.get("migratable") == "on"


def test_direct_kernel_boot() -> None:
    dom = parsed(make_spec())
    assert dom.findtext("os/kernel") == "/c/k"
    assert dom.findtext("os/initrd") == "/c/i"
    assert dom.findtext("os/cmdline") == "console=ttyS0 quiet"
    assert dom.find("os/boot") is None


def test_disk_boot_without_kernel() -> None:
    dom = parsed(make_spec(kernel=None, initrd=None, cmdline=None))
    assert dom.find("os/kernel") is None
    assert dom.find("os/boot").get("dev") == "hd"


def test_disks_console_and_graphics() -> None:
    dom = parsed(make_spec(disk_cachemode="writeback"))
    assert guest_config.disk_sources(dom) == [
        ("vda", "/i/u/disk", "qcow2"), ("vdb", "/i/u/disk.local", "raw")]
    assert {d.find("target").get("bus") for d in dom.findall("devices/disk")} == {"virtio"}
    assert {d.find("driver").get("cache") for d in dom.findall("devices/disk")} == {"writeback"}
    serial = dom.find("devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == "/i/u/console.log"
    vnc = dom.find("devices/graphics")
    assert vnc.get("type") == "vnc" and vnc.get("listen") == "198.18.1.2"
    assert vnc.find("listen").get("address") == "198.18.1.2"


def test_vifs_become_virtio_interfaces() -> None:
    nets = NetworkInfo(vifs=[VIF(id="v1", address="52:54:00:12:34:56")])
    dom = parsed(make_spec(network_info=nets))
    iface = dom.find("devices/interface")
    assert iface.find("mac").get("address") == "52:54:00:12:34:56"
    assert iface.find("model").get("type") == "virtio"


def test_flavor_is_recorded_in_metadata() -> None:
    dom = parsed(make_spec())
    flavor = dom.find(f"metadata/{{{guest_config.METADATA_NS}}}instance/"
                      f"{{{guest_config.METADATA_NS}}}flavor")
    assert flavor.get("name") == "m1" and flavor.get("ephemeral_gb") == "1"


def test_names_are_escaped_not_injected() -> None:
    spec = make_spec()
    spec.instance.name = "evil</name><devices/><name>"
    dom = parsed(spec)
    assert dom.findtext("name") == "evil</name><devices/><name>"
    assert len(dom.findall("devices")) == 1


def test_bad_listen_address_is_refused() -> None:
    with pytest.raises(InvalidHostname):
        guest_config.build_domain(make_spec(listen_address="0.0.0.0,password=x"))


@pytest.mark.parametrize("kw", [{"virt_type": "xen"},
                                {"disks": [DiskSpec("/d", "vmdk", "vda")]}])
def test_unsupported_values_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(Invalid):
        guest_config.build_domain(make_spec(**kw))
