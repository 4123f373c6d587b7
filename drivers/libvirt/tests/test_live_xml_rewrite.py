"""The destination-XML rewrite of a live migration, over domain XML built by the
driver's own guest_config plus the device kinds it must also handle (SPICE, TCP
serial consoles, volumes).  No hypervisor needed."""

from __future__ import annotations

import copy

import pytest
from lxml import etree
from virtsdk_libvirt import guest_config, xmlutil
from virtsdk_libvirt.live_migration.xml_rewrite import (
    DestinationSpec,
    ListenAddressError,
    check_can_migrate_as_is,
    graphics_listen_addresses,
    is_portable_address,
    paths_under,
    reroot_paths,
    rewrite_for_destination,
    rewrite_serial,
    rewrite_vifs,
)

from virtsdk.exceptions import Invalid, UnsafeXML
from virtsdk.objects import VIF, BlockDeviceMapping, Flavor, Instance, NetworkInfo

SRC_ROOT = "/lab/a/instances"
DST_ROOT = "/lab/b/instances"
UUID = "6f1c2a8e-2f4b-4f38-9d55-0d3c7f1b2a10"
MAC = "52:54:00:12:34:56"


def _domain(listen: str = "198.18.1.2") -> etree._Element:
    inst = Instance(name="vm1", uuid=UUID, flavor=Flavor("m1", 256, 1, 1))
    spec = guest_config.GuestSpec(
        instance=inst, flavor=inst.flavor, virt_type="qemu",
        disks=[guest_config.DiskSpec(f"{SRC_ROOT}/{UUID}/disk", "qcow2", "vda")],
        console_log=f"{SRC_ROOT}/{UUID}/console.log", listen_address=listen,
        kernel=f"{SRC_ROOT}/_base/abc.kernel", initrd=f"{SRC_ROOT}/_base/abc.initrd",
        network_info=NetworkInfo(vifs=[VIF(id="v1", address=MAC)]))
    root = guest_config.build_domain(spec)
    # Round trip through the hardened parser, as live_migration does with XMLDesc.
    return xmlutil.parse(xmlutil.to_string(root))


def _add(root: etree._Element, xml: str) -> None:
    root.find("devices").append(xmlutil.parse(xml))


def _spec(**kw: object) -> DestinationSpec:
    base: dict[str, object] = {
        "vnc_listen": "198.18.1.3", "spice_listen": "198.18.1.3",
        "serial_listen": "198.18.1.3",
        "path_moves": ((f"{SRC_ROOT}/{UUID}", f"{DST_ROOT}/{UUID}"),
                       (f"{SRC_ROOT}/_base", f"{DST_ROOT}/_base")),
    }
    base.update(kw)
    return DestinationSpec(**base)  # type: ignore[arg-type]


def test_vnc_listen_attribute_and_children_rewritten():
    root = _domain()
    assert graphics_listen_addresses(root) == {"vnc": ["198.18.1.2", "198.18.1.2"]}
    rewrite_for_destination(root, _spec())
    gr = root.find("devices/graphics")
    assert gr.get("listen") == "198.18.1.3"
    assert [el.get("address") for el in gr.findall("listen")] == ["198.18.1.3"]


def test_spice_rewritten_independently_of_vnc():
    root = _domain()
    _add(root, "<graphics type='spice' autoport='yes' listen='198.18.1.2'>"
               "<listen type='address' address='198.18.1.2'/></graphics>")
    rewrite_for_destination(root, _spec(vnc_listen="10.0.0.7", spice_listen="10.0.0.8"))
    assert graphics_listen_addresses(root) == {
        "vnc": ["10.0.0.7", "10.0.0.7"], "spice": ["10.0.0.8", "10.0.0.8"]}


def test_source_address_without_destination_address_is_refused():
    root = _domain()
    with pytest.raises(ListenAddressError, match="198.18.1.2"):
        rewrite_for_destination(root, _spec(vnc_listen=None))
    with pytest.raises(ListenAddressError, match="vnc graphics listen on 198.18.1.2"):
        check_can_migrate_as_is(root)


@pytest.mark.parametrize("addr", ["0.0.0.0", "::", "127.0.0.1", "::1"])
def test_portable_listen_needs_no_destination_address(addr):
    root = _domain(listen=addr)
    check_can_migrate_as_is(root)
    rewrite_for_destination(root, _spec(vnc_listen=None))
    assert graphics_listen_addresses(root)["vnc"] == [addr, addr]
    assert is_portable_address(addr)
    assert not is_portable_address("192.0.2.1")


def test_serial_tcp_host_and_ports_rewritten_console_mirrors_serial():
    root = _domain()
    _add(root, "<serial type='tcp'><source mode='bind' host='198.18.1.2' service='10000'/>"
               "<protocol type='raw'/><target port='1'/></serial>")
    _add(root, "<console type='tcp'><source mode='bind' host='198.18.1.2' service='10000'/>"
               "<protocol type='raw'/><target type='serial' port='1'/></console>")
    _add(root, "<serial type='tcp'><source mode='connect' host='192.0.2.9' service='7'/>"
               "<target port='2'/></serial>")
    rewrite_serial(root, _spec(serial_ports=(10005, 10006)))
    bind = root.findall("devices/serial[@type='tcp']")[0].find("source")
    assert (bind.get("host"), bind.get("service")) == ("198.18.1.3", "10005")
    console = root.find("devices/console[@type='tcp']/source")
    assert (console.get("host"), console.get("service")) == ("198.18.1.3", "10005")
    connect = root.findall("devices/serial[@type='tcp']")[1].find("source")
    assert (connect.get("host"), connect.get("service")) == ("192.0.2.9", "7")


def test_serial_on_source_address_without_destination_address_is_refused():
    root = _domain(listen="0.0.0.0")
    _add(root, "<serial type='tcp'><source mode='bind' host='198.18.1.2' service='1'/>"
               "</serial>")
    with pytest.raises(ListenAddressError, match="serial"):
        rewrite_for_destination(root, _spec(serial_listen=None))


def test_paths_rerooted_disk_kernel_initrd_console_log():
    root = _domain()
    root.find("devices/serial").append(etree.Element("log", file=f"{SRC_ROOT}/{UUID}/x.log"))
    rewrite_for_destination(root, _spec())
    assert root.find("devices/disk/source").get("file") == f"{DST_ROOT}/{UUID}/disk"
    assert root.findtext("os/kernel") == f"{DST_ROOT}/_base/abc.kernel"
    assert root.findtext("os/initrd") == f"{DST_ROOT}/_base/abc.initrd"
    serial = root.find("devices/serial")
    assert serial.find("source").get("path") == f"{DST_ROOT}/{UUID}/console.log"
    assert serial.find("log").get("file") == f"{DST_ROOT}/{UUID}/x.log"
    assert SRC_ROOT not in xmlutil.to_string(root)


def test_reroot_moves_each_path_once_and_leaves_prefix_lookalikes():
    root = xmlutil.parse(
        "<domain><devices>"
        "<disk type='file'><source file='/a/inst/disk'/></disk>"
        "<disk type='file'><source file='/a/inst-other/disk'/></disk>"
        "<disk type='file'><source file='/shared/images/base'/></disk>"
        "</devices></domain>")
    # A chained move (dst of the first is under src of the second) must not apply twice.
    moved = reroot_paths(root, [("/a/inst", "/a/x"), ("/a/x", "/zzz")])
    assert moved == [("/a/inst/disk", "/a/x/disk")]
    files = [s.get("file") for s in root.iter("source")]
    assert files == ["/a/x/disk", "/a/inst-other/disk", "/shared/images/base"]
    assert paths_under(root, ["/shared/images"]) == ["/shared/images/base"]
    assert [s.get("file") for s in root.iter("source")] == files  # paths_under is pure


def test_vifs_matched_by_mac():
    root = _domain()
    _add(root, "<interface type='user'><mac address='52:54:00:00:00:99'/></interface>")
    done = rewrite_vifs(root, [VIF(id="v1", address=MAC.upper(), type="bridge",
                                   details={"bridge": "br-dst", "dev": "tap-v1"})])
    assert done == [MAC]
    ifaces = root.findall("devices/interface")
    assert ifaces[0].get("type") == "bridge"
    assert ifaces[0].find("source").get("bridge") == "br-dst"
    assert ifaces[0].find("target").get("dev") == "tap-v1"
    assert ifaces[1].get("type") == "user" and ifaces[1].find("source") is None
    with pytest.raises(Invalid, match="without a bridge"):
        rewrite_vifs(root, [VIF(id="v1", address=MAC, type="bridge")])


def test_volume_disk_uses_destination_connection_info():
    root = _domain()
    _add(root, "<disk type='block' device='disk'><source dev='/dev/src-vol'/>"
               "<target dev='vdb' bus='virtio'/></disk>")
    bdm = BlockDeviceMapping(device_name="/dev/vdb", volume_id="vol1",
                             connection_info={"data": {"device_path": "/dev/dst-vol"}})
    rewrite_for_destination(root, _spec(volumes=(bdm,)))
    disk = root.findall("devices/disk")[1]
    assert disk.get("type") == "block" and disk.find("source").get("dev") == "/dev/dst-vol"


@pytest.mark.parametrize("kw", [
    {"vnc_listen": "198.18.1.3/../x"},
    {"spice_listen": "a b"},
    {"serial_listen": "host;rm -rf /"},
    {"serial_ports": (0,)},
    {"serial_ports": (70000,)},
    {"path_moves": ((f"{SRC_ROOT}/{UUID}", "relative/dir"),)},
    {"path_moves": ((f"{SRC_ROOT}/{UUID}", f"{DST_ROOT}/../etc"),)},
])
def test_destination_values_are_validated(kw):
    root = _domain()
    before = xmlutil.to_string(root)
    with pytest.raises(Invalid):
        rewrite_for_destination(root, _spec(**kw))
    assert xmlutil.to_string(root) == before  # refused before anything changed


def test_rewrite_keeps_everything_else():
    root = _domain()
    orig = copy.deepcopy(root)
    rewrite_for_destination(root, _spec())
    assert root.findtext("uuid") == orig.findtext("uuid")
    assert root.findtext("memory") == orig.findtext("memory")
    assert root.find("cpu").attrib == orig.find("cpu").attrib
    assert len(root.find("devices")) == len(orig.find("devices"))


def test_hostile_xml_is_refused_by_the_parser():
    with pytest.raises(UnsafeXML):
        xmlutil.parse('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;'
                      "</domain>")
