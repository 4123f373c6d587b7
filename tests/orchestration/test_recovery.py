"""Crash and restart: a compute service stopped mid-flow (held by a stall, killed
there), then started again, finds its interrupted migrations and settles them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from virtsdk_fake.fabric import drop_fabric, get_fabric

from tests.orchestration.conftest import ALL_BACKENDS, boot, check_intact, make_cloud
from virtsdk.states import MigrationStatus, TaskState, VMState

BACKENDS = ALL_BACKENDS


@pytest.fixture
def cloud(tmp_path, backend) -> Iterator:
    c = make_cloud(tmp_path, backend)
    yield c
    get_fabric(c.conf.fake.fabric).faults.clear()
    c.stop()
    drop_fabric(c.conf.fake.fabric)


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
