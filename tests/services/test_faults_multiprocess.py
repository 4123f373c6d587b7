"""Real faults on a cloud of separate processes (fake driver, private RabbitMQ):
``kill -9`` of the source compute in the middle of a cold migration's disk transfer
and of a live migration, then a restart; the broker stopped for 20 s during a live
migration.  Each ends with the guest defined exactly once, its disk intact, the
instance usable and its records final."""

from __future__ import annotations

import signal
import time

import pytest

from tests.services.conftest import ProcessCloud
from tests.services.test_multiprocess import cli, fabric_of
from virtsdk.testing.services import RabbitNode

MARK = b"disk marker that must survive"


def _boot(cloud: ProcessCloud, host: str) -> str:
    cli(cloud, "flavor", "create", "small", "--ram", "256", "--vcpus", "1", "--disk", "1")
    uuid = cli(cloud, "server", "create", "vm", "--flavor", "small", "--host", host,
               "--wait").stdout.split()[0]
    fabric = fabric_of(cloud)
    with fabric.lock:
        fabric.instance(uuid).disks["disk"].write(65536, MARK)
    return uuid


def _settled(cloud: ProcessCloud, uuid: str, timeout: float = 90.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inst = cloud.db.instance_get(uuid)
        if inst.task_state is None:
            return str(inst.vm_state), str(inst.host)
        time.sleep(0.2)
    inst = cloud.db.instance_get(uuid)
    raise AssertionError(f"instance still {inst.vm_state}/{inst.task_state}:\n"
                         + "\n".join(cloud.log(n) for n in cloud.procs))


def _check_intact(cloud: ProcessCloud, uuid: str) -> str:
    fabric = fabric_of(cloud)
    found = fabric.find(uuid)
    assert [kind for _h, kind in found] == ["instance"], found
    with fabric.lock:
        assert fabric.instance(uuid).disks["disk"].read(65536, len(MARK)) == MARK
    return found[0][0]


def _wait_status(cloud: ProcessCloud, uuid: str, statuses: tuple[str, ...],
                 timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        migs = cloud.db.migration_get_all(uuid)
        if migs and str(migs[-1].status) in statuses:
            return
        time.sleep(0.1)
    raise AssertionError(f"no migration of {uuid} reached {statuses}")


@pytest.mark.parametrize("flow,step", [
    ("migrate", "migrate_disk.transfer"),
    ("live-migrate", "live_migration.iteration"),
])
def test_kill_source_compute_mid_flow_then_restart(process_cloud: ProcessCloud, flow: str,
                                                   step: str) -> None:
    cloud = process_cloud
    cloud.host_extra["mpA"] = f"[fake]\nstall_steps = {step}:0\n"
    cloud.start_all()
    uuid = _boot(cloud, "mpA")
    cli(cloud, "server", flow, uuid, "--host", "mpB")
    _wait_status(cloud, uuid, ("migrating", "running"))
    time.sleep(1.0)  # well inside the stalled step
    cloud.kill("mpA")  # kill -9 of the source compute (master and worker)
    cloud.host_extra["mpA"] = ""
    cloud.start("mpA")
    cloud.wait_up(["mpA"])
    vm_state, host = _settled(cloud, uuid)
    assert (vm_state, host) == ("active", "mpA"), cloud.db.migration_get_all(uuid)
    assert _check_intact(cloud, uuid) == "mpA"
    assert str(cloud.db.migration_get_all(uuid)[-1].status) in ("error", "failed")
    # usable afterwards: the same move goes through
    cli(cloud, "server", flow, uuid, "--host", "mpB", "--wait")
    if flow == "migrate":
        cli(cloud, "server", "confirm", uuid, "--wait")
    assert _check_intact(cloud, uuid) == "mpB"


def test_broker_stopped_20s_during_live_migration(process_cloud: ProcessCloud,
                                                  rabbit: RabbitNode) -> None:
    """The broker is down for 20 s while the guest is copied; the migration reaches
    its post step during the outage or while the services are still reconnecting.
    The post call to the destination goes out once the broker is back and is sent
    again until the destination's queue exists: the migration completes and the
    records follow the guest."""
    cloud = process_cloud
    cloud.host_extra["mpA"] = "[fake]\nstall_steps = live_migration.iteration:25\n"
    cloud.start_all()
    uuid = _boot(cloud, "mpA")
    cli(cloud, "server", "live-migrate", uuid, "--host", "mpB")
    _wait_status(cloud, uuid, ("running",))
    rabbit.stop_broker()
    try:
        time.sleep(20)
    finally:
        rabbit.start_broker()
    assert _settled(cloud, uuid, timeout=180) == ("active", "mpB"), \
        cloud.db.migration_get_all(uuid)
    assert _check_intact(cloud, uuid) == "mpB"
    assert str(cloud.db.migration_get_all(uuid)[-1].status) == "completed"


def test_sigterm_finishes_the_live_migration_in_flight(process_cloud: ProcessCloud) -> None:
    """SIGTERM to the source compute while its live migration is held for 3 s: the
    service stops taking work, lets the migration finish, then exits 0."""
    cloud = process_cloud
    cloud.host_extra["mpA"] = "[fake]\nstall_steps = live_migration.iteration:3\n"
    cloud.start_all()
    uuid = _boot(cloud, "mpA")
    cli(cloud, "server", "live-migrate", uuid, "--host", "mpB")
    _wait_status(cloud, uuid, ("running",))
    cloud.kill("mpA", signal.SIGTERM)
    assert cloud.procs["mpA"].wait(timeout=60) == 0, cloud.log("mpA")
    assert str(cloud.db.migration_get_all(uuid)[-1].status) == "completed"
    assert _settled(cloud, uuid) == ("active", "mpB")
    assert _check_intact(cloud, uuid) == "mpB"
