"""Host connection handling and host facts, against libvirt's in-process test driver
(``test:///default``: a real libvirt connection without a hypervisor)."""

from __future__ import annotations

from pathlib import Path

import pytest
from virtsdk_libvirt.host import Host, HostConnectionError

from virtsdk.exceptions import InstanceNotFound


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host("test:///default", str(tmp_path / "instances"), retries=0)


def test_resources_come_from_libvirt_and_the_disk(host: Host, tmp_path: Path) -> None:
    res = host.resources("node-1")
    conn = host.get_connection()
    info = conn.getInfo()
    assert res.hostname == "node-1"
    assert res.vcpus == info[2] and res.memory_mb == info[1]
    assert res.hypervisor_type == "TEST"
    assert res.vcpus_used >= 1  # the test driver's running "test" domain
    # memory used: the running guests' (as the fake driver counts), not the host's
    running = conn.listAllDomains(1)  # VIR_CONNECT_LIST_DOMAINS_ACTIVE
    assert res.memory_mb_used == -(-sum(d.info()[1] for d in running) // 1024) > 0
    assert res.local_gb > 0 and res.disk_available_least is not None
    assert res.cpu_info["arch"] == "i686"
    assert (tmp_path / "instances").is_dir()


def test_lookup_and_find(host: Host) -> None:
    assert host.lookup("test").name() == "test"
    assert host.find("no-such-domain") is None
    with pytest.raises(InstanceNotFound, match="no-such-domain"):
        host.lookup("no-such-domain")
    assert "test" in host.list_domain_names()


def test_dead_connection_is_reopened(host: Host) -> None:
    first = host.get_connection()
    first.close()  # as if libvirtd had gone away under us
    second = host.get_connection()
    assert second is not first
    assert second.getType() == "TEST"
    assert host.get_connection() is second


def test_unreachable_libvirt_names_the_uri(tmp_path: Path) -> None:
    bad = Host(f"test://{tmp_path}/missing.xml", str(tmp_path), retries=1, retry_interval=0)
    with pytest.raises(HostConnectionError, match="missing.xml"):
        bad.get_connection()
