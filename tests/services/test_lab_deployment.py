"""The lab as a deployment: one ``virtsdk-compute`` process inside each lab host
(its network, hostname and mounts), talking to its own libvirtd by a local URI with
no exec prefix; the conductor and the operator CLI in the root namespace; RabbitMQ
and PostgreSQL listening on the lab bridge.  Every flow goes through ``virtsdk
server ...`` and is checked against what libvirt really runs.

Real faults, each ending with the guest running exactly once (libvirt on both
hosts), its disk intact (the guest's own marker and a block of random data its QEMU
wrote into its disk), its records final and ``virtsdk audit`` clean, nothing left on
the other host: ``kill -9`` of the source compute during a live migration and during
a cold migration's disk transfer (then a restart), RabbitMQ stopped for 20 s during
a live migration, PostgreSQL stopped and started while the source of a cold
migration sends its disks.  A cold migration's disk transfer is held for a known time
by a rate cap (``tc`` token bucket) on the destination host's lab link.  The fault tests share one
deployment (module scope) to keep the suite short; each boots and deletes its own guest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from virtsdk_lab.deployment import LabDeployment

from tests.orchestration.test_lab_stack import where
from tests.services.test_multiprocess import cli

#: where the random block goes in the guest's disk (the guest's marker is at 0)
FILL_OFFSET = 64 << 20
#: its size (random data: nothing to compress, no hole to skip)
FILL_MIB = 32
#: the destination's lab link during a cold migration's disk transfer (kbit/s): the
#: transfer of :data:`FILL_MIB` MiB then lasts at least 16 s whatever the machine
TRANSFER_KBIT = 16_000

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


@pytest.fixture(scope="module")
def slow_lab_deployment(lab: Any, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[LabDeployment]:
    """Live migrations capped at 4 MiB/s: slow enough to abort, kill or cut, fast
    enough to converge under the default downtime steps.  Cold migrations send their
    disks over the network (``disk_transport = stream``: the lab hosts share one
    filesystem, so ``auto`` would copy them locally, as between hosts on shared
    storage), where a cap on the destination's link (:data:`TRANSFER_KBIT`) holds them."""
    yield from _deployment(lab, tmp_path_factory.mktemp("slowlab"),
                           "live_migration_bandwidth = 4\n"
                           "disk_transport = stream\n")


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
    """The status of ``uuid_``'s last migration once it is one of ``statuses``."""
    mig = _wait_last_migration(cloud, uuid_, lambda m: str(m.status) in statuses,
                               f"a status in {statuses}", timeout)
    return str(mig.status)


def _wait_transferring(cloud: LabDeployment, uuid_: str) -> None:
    """Until the cold migration of ``uuid_`` has sent part (not all) of its disks."""
    _wait_last_migration(cloud, uuid_, lambda m: 0 < m.disk_processed < m.disk_total,
                         "part of its disks sent", 120.0)


def _wait_last_migration(cloud: LabDeployment, uuid_: str, done: Callable[[Any], bool],
                         what: str, timeout: float) -> Any:
    from virtsdk.db.api import Database

    db = Database(cloud.db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            migs = db.migration_get_all(uuid_)
            if migs and done(migs[-1]):
                return migs[-1]
            time.sleep(0.1)
        raise AssertionError(f"migration of {uuid_} never reached {what}: "
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
    made = cli(cloud, "flavor", "create", "lab.small", "--ram", "128", "--vcpus", "1",
               "--disk", "1", check=False)  # the fault tests share one deployment
    assert made.returncode == 0 or "already exists" in made.stderr, made.stderr
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


def _host(lab: Any, name: str) -> Any:
    return next(h for h in lab.hosts if h.name == name)


def _fill_disk(lab: Any, host: str, uuid_: str, tmp: Path) -> tuple[str, str]:
    """Have the running guest's QEMU write :data:`FILL_MIB` MiB of random data into
    its disk (HMP ``qemu-io``: through QEMU's block layer, past the guest's marker,
    where the guest never writes) and check it landed; returns (the guest's marker
    token, the block's SHA-256)."""
    import libvirt_qemu
    from lxml import etree

    h = _host(lab, host)
    data = os.urandom(FILL_MIB << 20)
    pattern = h.instances_path / f"fill-{uuid_}.bin"
    pattern.write_bytes(data)
    conn = libvirt.open(h.libvirt_uri)
    try:
        dom = conn.lookupByUUIDString(uuid_)
        xml = etree.fromstring(dom.XMLDesc(0).encode(), etree.XMLParser(
            resolve_entities=False, no_network=True))
        alias = xml.find("devices/disk[@device='disk']/alias").get("name")
        device = f"/machine/peripheral/{alias}/virtio-backend"  # the virtio-blk device
        out = "".join(libvirt_qemu.qemuMonitorCommand(
            dom, f'qemu-io -d {device} "{command}"',
            libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP)
            # flush: the qcow2 metadata reaches the file (qemu-img reads it from there)
            for command in (f"write -s {pattern} {FILL_OFFSET} {len(data)}", "flush"))
    finally:
        conn.close()
        pattern.unlink()
    assert "error" not in out.lower(), out
    digest = hashlib.sha256(data).hexdigest()
    head, block_digest = _read_disk(lab, host, uuid_, tmp)
    assert head.startswith(b"VSDKMARK "), head[:40]
    assert block_digest == digest
    return head.split(b"\n", 1)[0].split()[1].decode(), digest


def _read_disk(lab: Any, host: str, uuid_: str, tmp: Path) -> tuple[bytes, str]:
    """(first 512 bytes, SHA-256 of the block) of the guest's disk on ``host``."""
    flat = tmp / f"{uuid_}.raw"
    disk = _host(lab, host).instances_path / uuid_ / "disk"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(disk), str(flat)],
                   check=True, capture_output=True, timeout=300)
    try:
        with open(flat, "rb") as fh:
            head = fh.read(512)
            fh.seek(FILL_OFFSET)
            return head, hashlib.sha256(fh.read(FILL_MIB << 20)).hexdigest()
    finally:
        flat.unlink()


def _assert_disk_intact(lab: Any, host: str, uuid_: str, token: str, digest: str,
                        tmp: Path) -> None:
    """The guest's disk on ``host`` starts with its marker and holds the block."""
    head, block_digest = _read_disk(lab, host, uuid_, tmp)
    assert head.startswith(f"VSDKMARK {token}\n".encode()), head[:40]
    assert block_digest == digest


def _nothing_left(lab: Any, cloud: LabDeployment, uuid_: str, host: str) -> None:
    """Only ``host`` holds files of ``uuid_`` (no copy, no ``_resize`` directory
    anywhere), no disk receiver or sender runs, and ``virtsdk audit`` is clean."""
    for h in lab.hosts:
        names = sorted(p.name for p in h.instances_path.iterdir() if p.name.startswith(uuid_))
        assert names == ([uuid_] if h.name == host else []), (h.name, names)
    procs = [p for p in os.listdir("/proc") if p.isdigit()]
    transfers = []
    for pid in procs:
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ")
        except OSError:
            continue
        if b"virtsdk.transfer" in cmd and uuid_.encode() in cmd:
            transfers.append(cmd.decode(errors="replace"))
    assert transfers == []
    audit = cli(cloud, "audit", check=False)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_abort_then_kill_source_compute_on_the_lab(lab: Any,
                                                   slow_lab_deployment: LabDeployment,
                                                   guest_image: Any, tmp_path: Path) -> None:
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
    src = _runs_once_where_recorded(lab, cloud, uuid_)

    # kill -9 of the source compute during a cold migration's disk transfer
    dst = b if src == a else a
    token, digest = _fill_disk(lab, src, uuid_, tmp_path)
    with lab.inbound_rate_limit(dst, TRANSFER_KBIT):
        cli(cloud, "server", "migrate", uuid_, "--host", dst)
        _wait_transferring(cloud, uuid_)
        cloud.kill(src)
    cloud.start_service(src)
    cloud.wait_up([src])
    assert _runs_once_where_recorded(lab, cloud, uuid_) == src
    assert _wait_migration(cloud, uuid_, ("error", "failed")) in ("error", "failed")
    _assert_disk_intact(lab, src, uuid_, token, digest, tmp_path)
    _nothing_left(lab, cloud, uuid_, src)
    cli(cloud, "server", "delete", uuid_, "--wait")
    assert where(lab, uuid_) == []


def test_broker_stopped_20s_during_live_migration_on_the_lab(
        lab: Any, slow_lab_deployment: LabDeployment, guest_image: Any,
        tmp_path: Path) -> None:
    cloud = slow_lab_deployment
    a, b = (h.name for h in lab.hosts)
    uuid_ = _boot_lab_guest(cloud, guest_image, a)
    cli(cloud, "server", "live-migrate", uuid_, "--host", b)
    _wait_migration(cloud, uuid_, ("running",))
    cloud.stop_broker()
    try:
        time.sleep(20)
    finally:
        cloud.start_broker()
    src = _runs_once_where_recorded(lab, cloud, uuid_)

    # PostgreSQL stopped and started during a cold migration
    dst = b if src == a else a
    token, digest = _fill_disk(lab, src, uuid_, tmp_path)
    with lab.inbound_rate_limit(dst, TRANSFER_KBIT):
        cli(cloud, "server", "migrate", uuid_, "--host", dst)
        # the disks are on their way (the cap holds them for seconds)
        _wait_transferring(cloud, uuid_)
        cloud.restart_database()
        # the services wait for the server (new connections are retried): the move goes on
        assert _wait_migration(cloud, uuid_, ("finished", "error", "failed"),
                               timeout=300) == "finished"
    cli(cloud, "server", "confirm", uuid_, "--wait")
    assert _runs_once_where_recorded(lab, cloud, uuid_) == dst
    _assert_disk_intact(lab, dst, uuid_, token, digest, tmp_path)
    _nothing_left(lab, cloud, uuid_, dst)
    cli(cloud, "server", "delete", uuid_, "--wait")
    assert where(lab, uuid_) == []
