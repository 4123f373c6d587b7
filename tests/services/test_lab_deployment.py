"""The lab as a deployment: one ``virtsdk-compute`` process inside each lab host
(its network, hostname and mounts), talking to its own libvirtd by a local URI with
no exec prefix; the conductor and the operator CLI in the root namespace; RabbitMQ
listening on the lab bridge.  Every flow goes through ``virtsdk server ...`` and is
checked against what libvirt really runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from virtsdk_lab.deployment import LabDeployment

from tests.orchestration.test_lab_stack import where
from tests.services.test_multiprocess import cli

pytestmark = pytest.mark.lab


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


def _deployment(lab: Any, tmp_path: Path, host_extra: str = "") -> Iterator[LabDeployment]:
    from drivers.libvirt.tests.libvirt_lab import clean_lab_host

    deployment = LabDeployment(lab.hosts, lab.names.gateway, tmp_path, host_extra=host_extra)
    try:
        yield deployment.start()
    finally:
        deployment.stop()
        for host in lab.hosts:
            clean_lab_host(host)


@pytest.fixture
def lab_deployment(lab: Any, tmp_path: Path) -> Iterator[LabDeployment]:
    yield from _deployment(lab, tmp_path)


@pytest.fixture
def slow_lab_deployment(lab: Any, tmp_path: Path) -> Iterator[LabDeployment]:
    """Live migrations capped at 4 MiB/s: slow enough to abort, kill or cut, fast
    enough to converge under the default downtime steps."""
    yield from _deployment(lab, tmp_path, "live_migration_bandwidth = 4\n")


def test_flows_through_the_cli_on_the_lab(lab: Any, lab_deployment: LabDeployment,
                                         guest_image: Any) -> None:
    cloud = lab_deployment
    a, b = (h.name for h in lab.hosts)
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


def _wait_migration(cloud: LabDeployment, uuid_: str, statuses: tuple[str, ...],
                    timeout: float = 120.0) -> str:
    from virtsdk.db.api import Database

    db = Database(cloud.db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            migs = db.migration_get_all(uuid_)
            if migs and str(migs[-1].status) in statuses:
                return str(migs[-1].status)
            time.sleep(0.2)
        raise AssertionError(f"migration of {uuid_} never reached {statuses}: "
                             f"{db.migration_get_all(uuid_)[-1:]}")
    finally:
        db.dispose()


def _settled(cloud: LabDeployment, uuid_: str, timeout: float = 300.0) -> Any:
    from virtsdk.db.api import Database

    db = Database(cloud.db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inst = db.instance_get(uuid_)
            if inst.task_state is None:
                return inst
            time.sleep(0.5)
        raise AssertionError(f"instance {uuid_} still has a task:\n"
                             + "\n".join(cloud.log(n) for n in cloud.procs))
    finally:
        db.dispose()


def _boot_lab_guest(cloud: LabDeployment, guest_image: Any, host: str) -> str:
    cli(cloud, "flavor", "create", "lab.small", "--ram", "128", "--vcpus", "1", "--disk", "1")
    return cli(cloud, "server", "create", f"flt-{uuid.uuid4().hex[:6]}", "--flavor",
               "lab.small", "--host", host, "--image", f"vsdk-guest-{guest_image.key}",
               "--image-property", f"kernel={guest_image.kernel}",
               "--image-property", f"initrd={guest_image.initrd}",
               "--image-property", f"cmdline={guest_image.cmdline()}",
               "--wait", "--timeout", "180").stdout.split()[0]


def _runs_once_where_recorded(lab: Any, cloud: LabDeployment, uuid_: str) -> str:
    """The guest runs on exactly one host, the one its record names, and the
    instance is ACTIVE; returns that host."""
    inst = _settled(cloud, uuid_)
    running = where(lab, uuid_)
    logs = "\n".join(f"--- {n}\n{cloud.log(n)}" for n in cloud.procs)
    assert [active for _h, active in running] == [True], f"{running}\n{logs}"
    assert (inst.host, str(inst.vm_state)) == (running[0][0], "active"), \
        f"{inst}\n{running}\n{logs}"
    return running[0][0]


def test_abort_then_kill_source_compute_on_the_lab(lab: Any,
                                                   slow_lab_deployment: LabDeployment,
                                                   guest_image: Any) -> None:
    cloud = slow_lab_deployment
    a, b = (h.name for h in lab.hosts)
    uuid_ = _boot_lab_guest(cloud, guest_image, a)
    assert where(lab, uuid_) == [(a, True)]

    # abort through the CLI: the guest stays on A
    cli(cloud, "server", "live-migrate", uuid_, "--host", b)
    _wait_migration(cloud, uuid_, ("running",))
    cli(cloud, "server", "abort", uuid_)
    assert _runs_once_where_recorded(lab, cloud, uuid_) == a
    assert _wait_migration(cloud, uuid_, ("cancelled",)) == "cancelled"

    # kill -9 of the source compute during a live migration, then a restart
    cli(cloud, "server", "live-migrate", uuid_, "--host", b)
    _wait_migration(cloud, uuid_, ("running",))
    cloud.kill(a)
    cloud.start_service(a)
    cloud.wait_up([a])
    _runs_once_where_recorded(lab, cloud, uuid_)
    cli(cloud, "server", "delete", uuid_, "--wait")
    assert where(lab, uuid_) == []


def test_broker_stopped_20s_during_live_migration_on_the_lab(
        lab: Any, slow_lab_deployment: LabDeployment, guest_image: Any) -> None:
    cloud = slow_lab_deployment
    a, b = (h.name for h in lab.hosts)
    uuid_ = _boot_lab_guest(cloud, guest_image, a)
    cli(cloud, "server", "live-migrate", uuid_, "--host", b)
    _wait_migration(cloud, uuid_, ("running",))
    cloud.broker.halt()
    try:
        time.sleep(20)
    finally:
        cloud.broker.start()
    _runs_once_where_recorded(lab, cloud, uuid_)
