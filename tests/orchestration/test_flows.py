"""Every flow end to end through the API on the fake driver, and the API's refusals."""

from __future__ import annotations

import pytest
from virtsdk_fake.fabric import drop_fabric, get_fabric

from tests.orchestration.conftest import (
    ALL_BACKENDS,
    boot,
    check_intact,
    make_cloud,
    usage,
    wait_status,
)
from virtsdk.exceptions import (
    ComputeServiceUnavailable,
    FlavorNotFound,
    HostNotFound,
    InstanceInvalidState,
    InstanceNotFound,
    Invalid,
    MigrationPreCheckError,
    NoValidHost,
    ResizeShrinkNotAllowed,
)
from virtsdk.live_migration.policies import LinearDowntimeSteps
from virtsdk.rpc.notifications import NotificationCollector
from virtsdk.states import MigrationStatus, MigrationType, PowerState, VMState

BACKENDS = ALL_BACKENDS


def test_boot_places_instance_and_records_action(cloud, fabric):
    inst, _ = boot(cloud, fabric)
    assert fabric.find(inst.uuid) == [(inst.host, "instance")]
    assert inst.power_state == PowerState.RUNNING
    actions = cloud.api.list_actions(cloud.ctx, inst.uuid)
    assert [a.action for a in actions] == ["create"]
    assert [(e.event, e.result) for e in actions[0].events] == [
        ("compute_build_and_run_instance", "Success")]
    assert actions[0].finish_time is not None


def test_resize_then_confirm(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    api.resize(ctx, inst.uuid, "medium")
    resized = api.wait(ctx, inst.uuid)
    assert resized.vm_state == VMState.RESIZED
    assert resized.host != inst.host
    assert resized.flavor.name == "medium" and resized.old_flavor.name == "small"
    assert fabric.find(inst.uuid) == sorted([(resized.host, "instance"),
                                             (inst.host, "resize_copy")])
    mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
    assert (mig.migration_type, mig.status, mig.progress) == (
        MigrationType.RESIZE, MigrationStatus.FINISHED, 100)
    # the source keeps its claim (old flavor) until the resize is confirmed
    assert cloud.db.host_usage(inst.host).memory_mb >= 256
    api.confirm_resize(ctx, inst.uuid)
    done = api.wait(ctx, inst.uuid)
    assert done.vm_state == VMState.ACTIVE and done.old_flavor is None
    assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.CONFIRMED
    check_intact(cloud, fabric, done, before, memory=False)
    guest = fabric.instance(inst.uuid)
    assert guest.disks["disk"].size == 2 * 1024**3
    assert guest.power_state == PowerState.RUNNING
    events = [e.event for a in api.list_actions(ctx, inst.uuid) if a.action == "resize"
              for e in a.events]
    assert events == ["cold_migrate", "compute_prep_resize", "compute_resize_instance",
                      "compute_finish_resize"]


def test_resize_then_revert_restores_source(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    claims = usage(cloud)
    api.resize(ctx, inst.uuid, "medium")
    assert api.wait(ctx, inst.uuid).vm_state == VMState.RESIZED
    api.revert_resize(ctx, inst.uuid)
    back = api.wait(ctx, inst.uuid)
    assert (back.vm_state, back.host, back.flavor.name) == (VMState.ACTIVE, inst.host,
                                                            "small")
    mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
    assert mig.status == MigrationStatus.REVERTED
    check_intact(cloud, fabric, back, before, memory=False)
    assert fabric.instance(inst.uuid).disks["disk"].size == 1024**3
    assert usage(cloud) == claims


def test_cold_migrate_to_requested_host_keeps_flavor(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    api.migrate(ctx, inst.uuid, host="host3")
    moved = api.wait(ctx, inst.uuid)
    assert (moved.vm_state, moved.host, moved.flavor.name) == (VMState.RESIZED, "host3",
                                                               "small")
    assert api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].migration_type == \
        MigrationType.MIGRATION
    api.confirm_resize(ctx, inst.uuid)
    check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=False)


def test_stopped_instance_stays_stopped_through_resize(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    cloud.db.instance_update(inst.uuid, {"vm_state": VMState.STOPPED})
    fabric.instance(inst.uuid).power_state = PowerState.SHUTDOWN
    api.migrate(ctx, inst.uuid)
    api.wait(ctx, inst.uuid)
    api.confirm_resize(ctx, inst.uuid)
    done = api.wait(ctx, inst.uuid)
    assert done.vm_state == VMState.STOPPED
    assert fabric.instance(inst.uuid).power_state == PowerState.SHUTDOWN
    check_intact(cloud, fabric, done, before, memory=False)


def test_live_migrate_scheduler_picks_and_memory_moves(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    mig = api.live_migrate(ctx, inst.uuid)
    moved = api.wait(ctx, inst.uuid)
    assert moved.host != inst.host and moved.vm_state == VMState.ACTIVE
    final = api.get_migration(ctx, inst.uuid, mig.id)
    assert (final.status, final.progress, final.dest_host) == (
        MigrationStatus.COMPLETED, 100, moved.host)
    assert final.memory_total == 256 * 1024**2
    check_intact(cloud, fabric, moved, before, memory=True)
    events = [e.event for a in api.list_actions(ctx, inst.uuid)
              if a.action == "live-migration" for e in a.events]
    assert events == ["conductor_live_migrate", "compute_live_migration",
                      "compute_pre_live_migration",
                      "compute_post_live_migration_at_destination"]


def test_live_migrate_to_requested_host_with_progress_monotonic(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, flavor="large", host="host2",
                        metadata={"fake:dirty_rate_mbps": "200"})
    seen: list[int] = []
    orig = cloud.db.migration_record_progress

    def spy(mid, values, details=None, **kwargs):
        stored = orig(mid, values, details, **kwargs)
        seen.append(stored)
        return stored

    cloud.db.migration_record_progress = spy
    try:
        mig = api.live_migrate(ctx, inst.uuid, host="host3", block_migration=True)
        moved = api.wait(ctx, inst.uuid)
    finally:
        del cloud.db.migration_record_progress
    assert moved.host == "host3"
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == 100
    details = api.get_migration_details(ctx, mig.id)
    assert details["job_type"] == "completed" and details["downtime_ms"] > 0
    check_intact(cloud, fabric, moved, before, memory=True)


def test_live_migration_that_needs_downtime_steps_records_them(cloud, fabric):
    """A guest whose 100 MiB working set is dirtied faster than the link copies it
    converges only once the allowed downtime covers it (~100 ms at 1 GiB/s): the
    linear policy's steps 50, 95, 140... that the monitor applied until then are in the
    migration record, in order."""
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, metadata={"fake:dirty_rate_mbps": "2000",
                                                 "fake:working_set_mb": "100"})
    mig = api.live_migrate(ctx, inst.uuid)
    moved = api.wait(ctx, inst.uuid)
    assert moved.host != inst.host
    final = api.get_migration(ctx, inst.uuid, mig.id)
    assert final.status == MigrationStatus.COMPLETED
    g = cloud.conf.live_migration
    linear = LinearDowntimeSteps(g.downtime, g.downtime_steps, g.downtime_delay).values()
    steps = final.downtime_steps
    # the first step applies at once; a step is skipped only if the (scaled) clock
    # jumped past it between two samples, so the record is a strictly increasing
    # subsequence of the schedule that ends with a downtime covering the working set
    assert steps[0] == linear[0] and len(steps) >= 2, steps
    assert steps == sorted(set(steps)) and set(steps) <= set(linear), (steps, linear)
    needed_ms = 100 * 1000 / 1024  # working set / link bandwidth
    assert steps[0] < needed_ms <= steps[-1], steps
    assert api.get_migration_details(ctx, mig.id)["downtime_steps"] == steps
    check_intact(cloud, fabric, moved, before, memory=True)


def test_abort_running_live_migration(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    claims = usage(cloud)
    stall = fabric.stall("live_migration.iteration", host=inst.host)
    mig = api.live_migrate(ctx, inst.uuid)
    assert stall.wait_reached(10)
    assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.RUNNING
    api.live_migration_abort(ctx, inst.uuid, mig.id)
    stall.release()
    back = api.wait(ctx, inst.uuid)
    assert (back.host, back.vm_state) == (inst.host, VMState.ACTIVE)
    assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.CANCELLED
    check_intact(cloud, fabric, back, before, memory=True)
    assert usage(cloud) == claims


def test_abort_queued_live_migration(cloud, fabric):
    """With one outbound slot per host, a second migration from the same host waits
    in 'queued'; aborting it cancels it without touching either guest."""
    api, ctx = cloud.api, cloud.ctx
    first, _ = boot(cloud, fabric, host="host1")
    second, before = boot(cloud, fabric, host="host1")
    stall = fabric.stall("live_migration.iteration", host="host1")
    m1 = api.live_migrate(ctx, first.uuid, host="host2")
    assert stall.wait_reached(10)
    m2 = api.live_migrate(ctx, second.uuid, host="host3")
    assert wait_status(cloud, second, m2.id, (MigrationStatus.ACCEPTED,)) == \
        MigrationStatus.QUEUED
    api.live_migration_abort(ctx, second.uuid, m2.id)
    assert api.wait(ctx, second.uuid).host == "host1"
    assert api.get_migration(ctx, second.uuid, m2.id).status == MigrationStatus.CANCELLED
    check_intact(cloud, fabric, api.show_instance(ctx, second.uuid), before, memory=True)
    stall.release()
    assert api.wait(ctx, first.uuid).host == "host2"
    assert api.get_migration(ctx, first.uuid, m1.id).status == MigrationStatus.COMPLETED


def test_force_complete_makes_a_non_converging_migration_finish(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, metadata={"fake:dirty_rate_mbps": "4000"})
    stall = fabric.stall("live_migration.iteration", host=inst.host)
    mig = api.live_migrate(ctx, inst.uuid)
    assert stall.wait_reached(10)
    api.live_migration_force_complete(ctx, inst.uuid, mig.id)
    stall.release()
    moved = api.wait(ctx, inst.uuid)
    assert moved.host != inst.host
    assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.COMPLETED
    check_intact(cloud, fabric, moved, before, memory=True)


def test_same_host_rules(cloud, fabric):
    """Resize and migrate never pick the instance's own host unless allowed."""
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    for other in ("host2", "host3"):
        cloud.db.service_update(other, "virtsdk-compute", {"disabled": True})
    try:
        with pytest.raises(NoValidHost, match="IgnoreHostsFilter"):
            api.resize(ctx, inst.uuid, "medium")
        assert api.show_instance(ctx, inst.uuid).task_state is None
        with pytest.raises(Invalid, match="allow_migrate_to_same_host"):
            api.migrate(ctx, inst.uuid, host="host1")
        cloud.conf.set_override("allow_resize_to_same_host", True, group="api")
        api.resize(ctx, inst.uuid, "medium")
        same = api.wait(ctx, inst.uuid)
        assert (same.host, same.vm_state) == ("host1", VMState.RESIZED)
        api.revert_resize(ctx, inst.uuid)
        back = api.wait(ctx, inst.uuid)
        assert (back.host, back.flavor.name, back.vm_state) == ("host1", "small",
                                                                VMState.ACTIVE)
        check_intact(cloud, fabric, back, before, memory=False)
        cloud.conf.set_override("allow_migrate_to_same_host", True, group="api")
        api.migrate(ctx, inst.uuid)
        assert api.wait(ctx, inst.uuid).host == "host1"
        api.confirm_resize(ctx, inst.uuid)
        check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=False)
    finally:
        cloud.conf.clear_override("allow_resize_to_same_host", group="api")
        cloud.conf.clear_override("allow_migrate_to_same_host", group="api")
        for other in ("host2", "host3"):
            cloud.db.service_update(other, "virtsdk-compute", {"disabled": False})


def test_refusals_before_anything_moves(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    with pytest.raises(InstanceNotFound):
        api.resize(ctx, "no-such-uuid", "medium")
    with pytest.raises(FlavorNotFound):
        api.resize(ctx, inst.uuid, "huge")
    with pytest.raises(Invalid, match="already has flavor"):
        api.resize(ctx, inst.uuid, "small")
    with pytest.raises(ResizeShrinkNotAllowed, match="root_gb"):
        api.resize(ctx, inst.uuid, "tiny-disk")
    with pytest.raises(HostNotFound):
        api.migrate(ctx, inst.uuid, host="nowhere")
    with pytest.raises(HostNotFound):
        api.live_migrate(ctx, inst.uuid, host="nowhere")
    with pytest.raises(Invalid):
        api.live_migrate(ctx, inst.uuid, host="bad host/../x")
    with pytest.raises(MigrationPreCheckError, match="own host"):
        api.live_migrate(ctx, inst.uuid, host="host1")
    with pytest.raises(InstanceInvalidState, match="vm_state"):
        api.confirm_resize(ctx, inst.uuid)
    with pytest.raises(Invalid, match="block_migration"):
        api.live_migrate(ctx, inst.uuid, block_migration="maybe")
    mig = api.list_migrations(ctx, instance_uuid=inst.uuid)
    assert [m.status for m in mig] == [MigrationStatus.ERROR]  # the refused live check
    now = api.show_instance(ctx, inst.uuid)
    assert (now.vm_state, now.task_state, now.host) == (VMState.ACTIVE, None, "host1")
    check_intact(cloud, fabric, now, before, memory=True)
    cloud.db.instance_update(inst.uuid, {"vm_state": VMState.STOPPED})
    with pytest.raises(InstanceInvalidState, match="'stopped'"):
        api.live_migrate(ctx, inst.uuid)
    cloud.db.instance_update(inst.uuid, {"vm_state": VMState.ACTIVE})


def test_live_migration_refuses_down_destination(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, _ = boot(cloud, fabric, host="host1")
    cloud.db.service_update("host2", "virtsdk-compute", {"forced_down": True})
    try:
        with pytest.raises(MigrationPreCheckError, match="down"):
            api.live_migrate(ctx, inst.uuid, host="host2")
        mig = api.live_migrate(ctx, inst.uuid)  # the scheduler skips host2
        assert api.wait(ctx, inst.uuid).host == "host3"
        assert api.get_migration(ctx, inst.uuid, mig.id).dest_host == "host3"
        cloud.db.service_update("host3", "virtsdk-compute", {"forced_down": True})
        with pytest.raises(ComputeServiceUnavailable, match="host3"):
            api.live_migrate(ctx, inst.uuid)  # the source itself is down
        assert api.show_instance(ctx, inst.uuid).vm_state == VMState.ACTIVE
    finally:
        for host in ("host2", "host3"):
            cloud.db.service_update(host, "virtsdk-compute", {"forced_down": False})


def test_delete_of_a_resized_instance_is_refused_until_confirmed(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    api.resize(ctx, inst.uuid, "medium")
    api.wait(ctx, inst.uuid)
    with pytest.raises(InstanceInvalidState, match="'resized'"):
        api.delete_instance(ctx, inst.uuid)
    api.confirm_resize(ctx, inst.uuid)
    check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=False)
    api.delete_instance(ctx, inst.uuid)
    assert fabric.find(inst.uuid) == []


def test_delete_removes_instance_everywhere(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, _ = boot(cloud, fabric)
    claims = usage(cloud)
    api.delete_instance(ctx, inst.uuid)
    assert fabric.find(inst.uuid) == []
    with pytest.raises(InstanceNotFound):
        api.show_instance(ctx, inst.uuid)
    assert cloud.db.host_usage(inst.host).memory_mb == claims[inst.host].memory_mb - 256



def test_inbound_limit_queues_a_second_migration_to_the_same_host(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    cloud.conf.set_override("max_concurrent_live_migrations_inbound", 1, group="compute")
    cloud.stop_compute("host2")
    cloud.start_compute("host2")
    try:
        first, _ = boot(cloud, fabric, host="host1")
        second, before = boot(cloud, fabric, host="host3")
        stall = fabric.stall("live_migration.iteration", host="host1")
        m1 = api.live_migrate(ctx, first.uuid, host="host2")
        assert stall.wait_reached(10)
        m2 = api.live_migrate(ctx, second.uuid, host="host2")
        assert wait_status(cloud, second, m2.id, (MigrationStatus.ACCEPTED,)) == \
            MigrationStatus.QUEUED
        for _ in range(5):  # several polls for a slot find none while host2 is full
            stall.wait(cloud.conf.compute.queue_poll_interval)
            assert api.get_migration(ctx, second.uuid, m2.id).status == \
                MigrationStatus.QUEUED
        stall.release()
        assert api.wait(ctx, second.uuid).host == "host2"
        assert api.get_migration(ctx, first.uuid, m1.id).status == MigrationStatus.COMPLETED
        assert api.get_migration(ctx, second.uuid, m2.id).status == MigrationStatus.COMPLETED
        check_intact(cloud, fabric, api.show_instance(ctx, second.uuid), before, memory=True)
    finally:
        cloud.conf.clear_override("max_concurrent_live_migrations_inbound", group="compute")
        cloud.stop_compute("host2")
        cloud.start_compute("host2")


@pytest.fixture
def notifying_cloud(tmp_path, backend):
    """Notifications are off by default: a cloud of this test's own with them on."""
    c = make_cloud(tmp_path, backend,
                   oslo_messaging_notifications={"driver": ["messagingv2"]})
    yield c
    c.stop()
    drop_fabric(c.conf.fake.fabric)


def test_notifications_of_resize_and_live_migration(notifying_cloud):
    cloud = notifying_cloud
    fabric = get_fabric(cloud.conf.fake.fabric)
    api, ctx = cloud.api, cloud.ctx
    with NotificationCollector(cloud.conf) as collector:
        inst, _ = boot(cloud, fabric)
        api.resize(ctx, inst.uuid, "medium")
        api.wait(ctx, inst.uuid)
        api.confirm_resize(ctx, inst.uuid)
        api.wait(ctx, inst.uuid)
        api.live_migrate(ctx, inst.uuid)
        api.wait(ctx, inst.uuid)
        collector.wait_for("live_migration.post.end")
        fabric.inject("pre_live_migration")
        api.live_migrate(ctx, inst.uuid)
        api.wait(ctx, inst.uuid)
        collector.wait_for("live_migration._rollback.end")
        seen = collector.event_types()
    for event in ("instance.create.start", "instance.create.end", "resize.prep.start",
                  "resize.prep.end", "resize.start", "resize.end", "resize.finish.start",
                  "resize.finish.end", "resize.confirm.start", "resize.confirm.end",
                  "live_migration.pre.start", "live_migration.pre.end",
                  "live_migration.post.start", "live_migration.post.dest.start",
                  "live_migration.post.dest.end", "live_migration.post.end"):
        assert event in seen, (event, seen)
    assert seen.index("live_migration.pre.start") < seen.index("live_migration.post.end")
    payload = collector.wait_for("resize.finish.end")[0].payload
    assert payload["instance_uuid"] == inst.uuid and payload["flavor"] == "medium"
