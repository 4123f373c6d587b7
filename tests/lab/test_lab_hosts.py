"""The session lab's hosts are separate libvirt hosts that can reach each other."""

import subprocess
import time

import libvirt
import pytest
from lxml import etree

pytestmark = pytest.mark.lab

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                         huge_tree=False)


def _host_uuid(conn):
    caps = etree.fromstring(conn.getCapabilities().encode(), PARSER)
    return caps.findtext("host/uuid")


def test_each_host_is_its_own_libvirt_host(lab):
    assert len(lab.hosts) == 2
    seen_uuids = set()
    for host in lab.hosts:
        assert host.libvirt_uri == f"qemu+tcp://{host.address}/system"
        conn = libvirt.open(host.libvirt_uri)
        try:
            assert conn.getHostname() == host.name
            assert _host_uuid(conn) == host.uuid
            seen_uuids.add(_host_uuid(conn))
        finally:
            conn.close()
    assert len(seen_uuids) == 2
    assert lab.host(lab.hosts[1].name) is lab.hosts[1]
    with pytest.raises(KeyError):
        lab.host("no-such-host")
    assert lab.hosts[0].address.startswith("198.18.")
    assert lab.hosts[0].address.rsplit(".", 1)[0] == lab.hosts[1].address.rsplit(".", 1)[0]


def test_status_reports_every_host_healthy(lab):
    statuses = lab.status()
    assert [s.name for s in statuses] == [h.name for h in lab.hosts]
    for status in statuses:
        assert status.healthy, status
        assert status.processes >= 2  # virtlogd + libvirtd


def test_hosts_reach_each_other_over_the_bridge_and_own_their_addresses(lab):
    a, b = lab.hosts
    listener = subprocess.Popen(
        [*b.exec_prefix, "nc", "-l", b.address, "7701"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for _attempt in range(100):
            sent = a.run(["nc", "-N", "-w", "5", b.address, "7701"], check=False,
                         input_data="hello from a\n")
            if sent.returncode == 0:
                break
            time.sleep(0.1)  # the listener is not up yet: connection refused
        out, _err = listener.communicate(timeout=10)
        assert out == "hello from a\n"
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    cannot_bind = a.run(["nc", "-l", b.address, "7702"], check=False, timeout=10)
    assert cannot_bind.returncode != 0
    assert "assign" in cannot_bind.stderr.lower()


def test_instances_paths_are_distinct_and_shared_with_the_root_namespace(lab):
    a, b = lab.hosts
    assert a.instances_path != b.instances_path
    probe = a.instances_path / "probe.txt"
    probe.write_text("written from the root namespace\n")
    try:
        seen = subprocess.run([*a.nsenter_prefix, "cat", str(probe)], capture_output=True,
                              text=True, check=True)
        assert seen.stdout == "written from the root namespace\n"
    finally:
        probe.unlink()


def test_hosts_have_private_libvirt_config_and_hostname(lab):
    for host in lab.hosts:
        conf = subprocess.run([*host.nsenter_prefix, "cat", "/etc/libvirt/libvirtd.conf"],
                              capture_output=True, text=True, check=True).stdout
        assert f'listen_addr = "{host.address}"' in conf
        assert f'host_uuid = "{host.uuid}"' in conf
        name = subprocess.run([*host.nsenter_prefix, "hostname"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert name == host.name
        hosts_file = subprocess.run([*host.nsenter_prefix, "cat", "/etc/hosts"],
                                    capture_output=True, text=True, check=True).stdout
        for peer in lab.hosts:
            assert f"{peer.address} {peer.name}" in hosts_file
