"""The lab as a deployment: one ``virtsdk-compute`` process inside each lab host
(its network, hostname and mounts), talking to its own libvirtd by a local URI with
no exec prefix; the conductor and the operator CLI in the root namespace; RabbitMQ
listening on the lab bridge.  Every flow goes through ``virtsdk server ...`` and is
checked against what libvirt really runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.services.brokers import PrivateRabbit
from tests.services.conftest import ProcessCloud
from tests.services.test_multiprocess import cli

pytestmark = pytest.mark.lab


def where(lab: Any, instance_uuid: str) -> list[tuple[str, bool]]:
    out = []
    for host in lab.hosts:
        conn = libvirt.open(host.libvirt_uri)
        try:
            dom = conn.lookupByUUIDString(instance_uuid)
            out.append((host.name, bool(dom.isActive())))
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    return out


def vnc_listen(host: Any, instance_uuid: str) -> str | None:
    from lxml import etree

    conn = libvirt.open(host.libvirt_uri)
    try:
        xml = conn.lookupByUUIDString(instance_uuid).XMLDesc(0)
    finally:
        conn.close()
    graphics = etree.fromstring(xml.encode(), etree.XMLParser(resolve_entities=False,
                                                              no_network=True)).find(
        "devices/graphics")
    return None if graphics is None else graphics.get("listen")


@pytest.fixture
def lab_deployment(lab: Any, tmp_path: Path) -> Iterator[ProcessCloud]:
    from tests.libvirt.conftest import clean_lab_host

    gateway = lab.names.gateway
    broker = PrivateRabbit(extra_address=gateway)
    broker.start()
    hosts = tuple(h.name for h in lab.hosts)
    host_extra = {h.name: ("[libvirt]\nconnection_uri = qemu:///system\n"
                           f"instances_path = {h.instances_path}\n"
                           f"my_ip = {h.address}\n"
                           "shutdown_retry_interval = 2\n")
                  for h in lab.hosts}
    cloud = ProcessCloud(tmp_path, broker.url_at(gateway), hosts, driver="libvirt",
                         extra="[compute]\nshutdown_timeout = 30\n"
                               "shutdown_retry_interval = 2\n",
                         host_extra=host_extra,
                         host_prefix={h.name: h.nsenter_prefix for h in lab.hosts})
    try:
        yield cloud
    finally:
        cloud.stop_all()
        broker.stop()
        for host in lab.hosts:
            clean_lab_host(host)


def test_flows_through_the_cli_on_the_lab(lab: Any, lab_deployment: ProcessCloud,
                                         guest_image: Any) -> None:
    cloud = lab_deployment
    a, b = (h.name for h in lab.hosts)
    for name in ("conductor", a, b):
        cloud.start(name)
    cloud.wait_up(("conductor", a, b), timeout=120)
    cli(cloud, "flavor", "create", "lab.small", "--ram", "256", "--vcpus", "1", "--disk", "1")
    cli(cloud, "flavor", "create", "lab.big", "--ram", "320", "--vcpus", "1", "--disk", "2")
    uuid_ = cli(cloud, "server", "create", f"dep-{uuid.uuid4().hex[:6]}", "--flavor",
                "lab.small", "--host", a, "--image", f"vsdk-guest-{guest_image.key}",
                "--image-property", f"kernel={guest_image.kernel}",
                "--image-property", f"initrd={guest_image.initrd}",
                "--image-property", f"cmdline={guest_image.cmdline()}",
                "--wait", "--timeout", "180").stdout.split()[0]
    assert where(lab, uuid_) == [(a, True)]

    assert vnc_listen(lab.hosts[0], uuid_) == lab.hosts[0].address
    out = cli(cloud, "server", "live-migrate", uuid_, "--host", b, "--wait").stdout
    assert "completed" in out
    assert where(lab, uuid_) == [(b, True)]
    # the destination XML was rewritten: VNC listens on B's address now
    assert vnc_listen(lab.hosts[1], uuid_) == lab.hosts[1].address

    cli(cloud, "server", "resize", uuid_, "lab.big", "--wait")
    cli(cloud, "server", "revert", uuid_, "--wait")
    assert where(lab, uuid_) == [(b, True)]

    cli(cloud, "server", "resize", uuid_, "lab.big", "--wait")
    cli(cloud, "server", "confirm", uuid_, "--wait")
    assert where(lab, uuid_) == [(a, True)]

    cli(cloud, "server", "migrate", uuid_, "--wait")
    cli(cloud, "server", "confirm", uuid_, "--wait")
    assert where(lab, uuid_) == [(b, True)]

    cli(cloud, "server", "delete", uuid_, "--wait")
    assert where(lab, uuid_) == []
