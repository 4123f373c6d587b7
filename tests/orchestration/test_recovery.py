"""Crash and restart: a compute service stopped mid-flow (held by a stall, killed
there), then started again, finds its interrupted migrations and settles them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from virtsdk_fake.fabric import get_fabric

from tests.orchestration.conftest import ALL_BACKENDS, boot, check_intact, own_cloud
from virtsdk.states import MigrationStatus, TaskState, VMState

BACKENDS = ALL_BACKENDS


@pytest.fixture
def cloud(tmp_path, backend) -> Iterator:
    with own_cloud(tmp_path, backend) as c:
        yield c


@pytest.fixture
def fabric(cloud):
    return get_fabric(cloud.conf.fake.fabric)


def crash_at(fabric, step, host):
    """Hold the next ``step`` on ``host``; once released, the held thread dies there
    (the process it belonged to is gone)."""
    stall = fabric.stall(step, host=host)
    fabric.inject(step, host=host)
    return stall


def test_source_crash_while_copying_disks_reverts_to_source(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    stall = crash_at(fabric, "migrate_disk.transfer", "host1")
    api.migrate(ctx, inst.uuid, host="host2")
    assert stall.wait_reached(10)
    assert api.show_instance(ctx, inst.uuid).task_state == TaskState.RESIZE_MIGRATING
    cloud.stop_compute("host1", crash=True)
    cloud.start_compute("host1")
    now = api.wait(ctx, inst.uuid)
    assert (now.host, now.vm_state) == ("host1", VMState.ACTIVE)
    mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
    assert mig.status == MigrationStatus.ERROR and "restart" in mig.error
    check_intact(cloud, fabric, now, before, memory=False)
    stall.release()
    api.live_migrate(ctx, inst.uuid, host="host3")
    assert api.wait(ctx, inst.uuid).host == "host3"


def test_destination_crash_in_finish_resize_restores_source(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    stall = crash_at(fabric, "finish_migration", "host2")
    api.migrate(ctx, inst.uuid, host="host2")
    assert stall.wait_reached(10)
    cloud.stop_compute("host2", crash=True)
    cloud.start_compute("host2")
    now = api.wait(ctx, inst.uuid)
    assert (now.host, now.vm_state) == ("host1", VMState.ACTIVE)
    assert api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].status == \
        MigrationStatus.ERROR
    check_intact(cloud, fabric, now, before, memory=False)
    stall.release()


def test_source_crash_during_live_migration_keeps_guest_on_source(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    stall = fabric.stall("live_migration.iteration", host="host1")
    mig = api.live_migrate(ctx, inst.uuid, host="host2")
    assert stall.wait_reached(10)
    cloud.stop_compute("host1", crash=True)
    cloud.start_compute("host1")
    now = api.wait(ctx, inst.uuid)
    assert (now.host, now.vm_state) == ("host1", VMState.ACTIVE)
    assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.FAILED
    stall.release()  # the old job was aborted by recovery: it cannot move the guest now
    check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=True)


def test_source_crash_after_switchover_follows_the_guest(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    stall = crash_at(fabric, "post_live_migration", "host1")
    mig = api.live_migrate(ctx, inst.uuid, host="host2")
    assert stall.wait_reached(10)
    cloud.stop_compute("host1", crash=True)
    cloud.start_compute("host1")
    now = api.wait(ctx, inst.uuid)
    assert (now.host, now.vm_state) == ("host2", VMState.ACTIVE)
    final = api.get_migration(ctx, inst.uuid, mig.id)
    assert final.status == MigrationStatus.ERROR and "reached host2" in final.error
    stall.release()
    check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=True)


def test_destination_crash_in_prep_resize_restores_instance(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    stall = crash_at(fabric, "prepare_migrate_disk_target", "host2")
    api.migrate(ctx, inst.uuid, host="host2")
    assert stall.wait_reached(10)
    cloud.stop_compute("host2", crash=True)
    cloud.start_compute("host2")
    now = api.wait(ctx, inst.uuid)
    assert (now.host, now.vm_state) == ("host1", VMState.ACTIVE)
    assert api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].status == \
        MigrationStatus.ERROR
    stall.release()
    check_intact(cloud, fabric, now, before, memory=True)


def test_crash_during_build_leaves_instance_in_error(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    stall = crash_at(fabric, "spawn", "host3")
    inst = api.create_instance(ctx, "interrupted", "small", host="host3")
    assert stall.wait_reached(10)
    cloud.stop_compute("host3", crash=True)
    cloud.start_compute("host3")
    assert api.wait(ctx, inst.uuid).vm_state == VMState.ERROR
    stall.release()
    api.delete_instance(ctx, inst.uuid)
    assert fabric.find(inst.uuid) == []


def wait_fenced(manager, timeout: float = 10.0) -> None:
    """Wait until the crashed incarnation's released thread tried to touch state
    (and was refused): only then is "nothing changed afterwards" a finding."""
    import time
    deadline = time.monotonic() + timeout
    while manager.fence.refused == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert manager.fence.refused > 0


@pytest.mark.parametrize(("flow", "step", "host", "final"), [
    ("confirm", "confirm_migration", "host1", ("host2", VMState.ACTIVE)),
    ("revert", "destroy", "host2", ("host1", VMState.ACTIVE)),
    ("revert", "finish_revert_migration", "host1", ("host1", VMState.ACTIVE)),
    ("resize", "finish_migration", "host2", ("host1", VMState.ACTIVE)),
])
def test_released_zombie_handler_writes_nothing(cloud, fabric, flow, step, host, final):
    """A crashed service's handler, released after the restart's recovery settled
    the flow, must not overwrite the outcome (it used to turn it into ERROR)."""
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    if flow != "resize":
        api.migrate(ctx, inst.uuid, host="host2")
        assert api.wait(ctx, inst.uuid).vm_state == VMState.RESIZED
    stall = crash_at(fabric, step, host)
    {"confirm": lambda: api.confirm_resize(ctx, inst.uuid),
     "revert": lambda: api.revert_resize(ctx, inst.uuid),
     "resize": lambda: api.migrate(ctx, inst.uuid, host="host2")}[flow]()
    assert stall.wait_reached(10)
    zombie = cloud.computes[host].manager
    cloud.stop_compute(host, crash=True)
    cloud.start_compute(host)
    now = api.wait(ctx, inst.uuid)
    assert (now.host, now.vm_state) == final
    settled = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].status
    stall.release()
    wait_fenced(zombie)
    again = api.wait(ctx, inst.uuid)
    assert (again.host, again.vm_state, again.task_state) == (*final, None)
    assert api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].status == settled
    check_intact(cloud, fabric, again, before, memory=False)


def test_late_check_timeout_never_overwrites_recovery(tmp_path):
    """Source crash during the live-migration checks: recovery settles the
    migration (failed, instance active); the conductor's call that can no longer be
    answered must neither turn that into ERROR nor hold the API caller until its
    RPC timeout (here 20 s; the test would need that long before the fix)."""
    import threading

    with own_cloud(tmp_path, api={"rpc_call_timeout": 20}) as c:
        fabric = get_fabric(c.conf.fake.fabric)
        api, ctx = c.api, c.ctx
        inst, before = boot(c, fabric, host="host1")
        stall = crash_at(fabric, "check_can_live_migrate_source", "host1")
        outcome: dict = {}

        def request():
            try:
                outcome["ok"] = api.live_migrate(ctx, inst.uuid, host="host2")
            except Exception as exc:  # noqa: BLE001
                outcome["error"] = exc
        caller = threading.Thread(target=request)
        caller.start()
        assert stall.wait_reached(10)
        c.stop_compute("host1", crash=True)
        c.start_compute("host1")
        caller.join(15)
        assert not caller.is_alive(), "the API caller is still blocked"
        assert "error" in outcome
        now = api.wait(ctx, inst.uuid)
        assert (now.host, now.vm_state, now.task_state) == ("host1", VMState.ACTIVE, None)
        mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
        assert mig.status == MigrationStatus.FAILED and "restart" in mig.error
        stall.release()
        check_intact(c, fabric, now, before, memory=True)


def test_conductor_crash_during_live_checks_fails_the_migration(tmp_path):
    """The conductor dies while the destination runs its check: the new conductor
    fails the migration it had accepted and gives the instance back; the old
    conductor's request, released afterwards, changes nothing."""
    with own_cloud(tmp_path, api={"rpc_call_timeout": 3}) as cloud:
        fabric = get_fabric(cloud.conf.fake.fabric)
        api, ctx = cloud.api, cloud.ctx
        inst, before = boot(cloud, fabric, host="host1")
        stall = fabric.stall("check_can_live_migrate_destination", host="host2")
        caller = threading.Thread(target=lambda: _quietly(
            lambda: api.live_migrate(ctx, inst.uuid, host="host2")))
        caller.start()
        assert stall.wait_reached(10)
        old = cloud.conductor
        cloud.restart_conductor(crash=True)
        mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
        assert mig.status == MigrationStatus.FAILED and "conductor" in mig.error
        now = api.wait(ctx, inst.uuid)
        assert (now.host, now.vm_state, now.task_state) == ("host1", VMState.ACTIVE, None)
        stall.release()
        caller.join(10)
        assert old.fence.closed
        assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.FAILED
        check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=True)
        api.live_migrate(ctx, inst.uuid, host="host2")
        assert api.wait(ctx, inst.uuid).host == "host2"


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the caller's error is not what is tested
        pass
