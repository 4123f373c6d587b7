"""A fault at every driver step and every RPC hop of every flow.

After each fault: the instance is settled (no task, no migration in progress), it
exists on exactly one host (the one the database names) with its disk bytes intact
(and its memory, for live migration), no claim is left behind, the migration record
says error / failed, and the instance can be live-migrated again (after an operator
reset when Nova's semantics left it in ERROR).
"""

from __future__ import annotations

import oslo_messaging
import pytest

from tests.orchestration.conftest import (
    ALL_BACKENDS,
    authoritative,
    boot,
    check_intact,
    snapshot,
    usage,
)
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.exceptions import (
    Conflict,
    InsufficientResources,
    MigrationPreCheckError,
    RollbackError,
    VirtSDKError,
)
from virtsdk.states import MigrationStatus, VMState

FAILED = (MigrationStatus.ERROR, MigrationStatus.FAILED)
BACKENDS = ALL_BACKENDS


@pytest.fixture
def rpc_fault(monkeypatch):
    """Arm ``rpc_fault("method")``: the next compute RPC of that name is lost at the
    sender (MessagingTimeout), as with a broker or network failure."""
    armed: dict[str, int] = {}

    def wrap(orig):
        def send(self, ctx, host, method, **kw):
            if armed.get(method):
                armed[method] -= 1
                raise oslo_messaging.MessagingTimeout(f"injected: {method} to {host} lost")
            return orig(self, ctx, host, method, **kw)
        return send

    monkeypatch.setattr(ComputeAPI, "_cast", wrap(ComputeAPI._cast))
    monkeypatch.setattr(ComputeAPI, "_call", wrap(ComputeAPI._call))

    def arm(method: str) -> None:
        armed[method] = 1
    return arm


def check_claims(cloud, baseline, inst, now) -> None:
    """No claim survives a settled flow: compared with ``baseline`` (taken right
    after boot), every host's claimed usage changed only by the instance leaving its
    old host and sitting on its new one (plus the kept source copy of a resize that
    waits for confirmation)."""
    migs = cloud.db.migration_get_all(instance_uuid=inst.uuid)
    for host in cloud.hosts:
        expect = baseline[host].memory_mb
        if host == inst.host:
            expect -= inst.flavor.memory_mb
        if host == now.host:
            expect += now.flavor.memory_mb
        if now.vm_state == VMState.RESIZED and migs[-1].source_host == host:
            expect += migs[-1].old_flavor.memory_mb
        assert cloud.db.host_usage(host).memory_mb == expect, (host, fabric_find(cloud))


def fabric_find(cloud):
    return [(i.uuid[:8], i.host, i.vm_state) for i in cloud.db.instance_get_all()]


def settle_and_check(cloud, fabric, inst, before, baseline, memory, expect_failed=True):
    api, ctx = cloud.api, cloud.ctx
    now = api.wait(ctx, inst.uuid, timeout=30)
    now = check_intact(cloud, fabric, now, before, memory=memory)
    migs = api.list_migrations(ctx, instance_uuid=inst.uuid)
    if expect_failed and migs:
        assert migs[-1].status in FAILED, migs[-1]
        assert migs[-1].error
    check_claims(cloud, baseline, inst, now)
    # usable again: an operator resets an ERROR instance; then it live-migrates
    host, guest = authoritative(fabric, inst.uuid)
    if now.vm_state == VMState.ERROR:
        if fabric.find(inst.uuid) != [(host, "instance")]:
            return now  # the kept copy waits for the operator (Nova does the same)
        api.reset_state(ctx, inst.uuid)
        guest.power_state = guest.power_state.__class__.RUNNING
    if now.vm_state == VMState.RESIZED:
        return now
    again = snapshot(fabric, inst.uuid)
    api.live_migrate(ctx, inst.uuid)
    moved = api.wait(ctx, inst.uuid, timeout=30)
    assert moved.vm_state == VMState.ACTIVE and moved.host != now.host
    check_intact(cloud, fabric, moved, again, memory=True)
    return now


COLD_DRIVER_FAULTS = [
    # (flow, step(s), exception class or None for InjectedFault)
    ("resize", ["prepare_migrate_disk_target"], None),
    ("resize", ["migrate_disk_and_power_off"], None),
    ("resize", ["migrate_disk_and_power_off"], RollbackError),
    ("resize", ["migrate_disk.transfer"], None),
    ("resize", ["migrate_disk.transfer", "abort_migrate_disk_target"], None),
    ("resize", ["finish_migration"], None),
    ("resize", ["finish_migration.resize"], None),
    ("resize", ["finish_migration", "destroy"], None),
    ("confirm", ["confirm_migration"], None),
    ("revert", ["destroy"], None),
    ("revert", ["finish_revert_migration"], None),
]

COLD_RPC_FAULTS = [
    ("resize", "prep_resize"),
    ("resize", "resize_instance"),
    ("resize", "finish_resize"),
    ("resize", "abort_resize_target"),   # with a transfer fault: cleanup call lost
    ("confirm", "confirm_resize"),
    ("revert", "revert_resize"),
    ("revert", "finish_revert_resize"),
]


def run_cold(cloud, fabric, flow, arm):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    baseline = usage(cloud)
    if flow != "resize":
        api.resize(ctx, inst.uuid, "medium")
        assert api.wait(ctx, inst.uuid).vm_state == VMState.RESIZED
    arm()
    action = {"resize": lambda: api.resize(ctx, inst.uuid, "medium"),
              "confirm": lambda: api.confirm_resize(ctx, inst.uuid),
              "revert": lambda: api.revert_resize(ctx, inst.uuid)}[flow]
    try:
        action()
    except Exception:  # noqa: BLE001 - a hop inside the request itself may fail
        pass
    return inst, before, baseline


@pytest.mark.parametrize(("flow", "steps", "exc"), COLD_DRIVER_FAULTS,
                         ids=lambda v: "+".join(v) if isinstance(v, list) else
                         getattr(v, "__name__", str(v)))
def test_cold_driver_fault(cloud, fabric, flow, steps, exc):
    def arm():
        for step in steps:
            fabric.inject(step, exc=exc)
    inst, before, baseline = run_cold(cloud, fabric, flow, arm)
    now = settle_and_check(cloud, fabric, inst, before, baseline, memory=False)
    if exc is RollbackError:
        assert now.vm_state == VMState.ACTIVE and now.host == inst.host


@pytest.mark.parametrize(("flow", "method"), COLD_RPC_FAULTS, ids=lambda v: str(v))
def test_cold_rpc_hop_lost(cloud, fabric, rpc_fault, flow, method):
    def arm():
        rpc_fault(method)
        if method == "abort_resize_target":
            fabric.inject("migrate_disk.transfer")
    inst, before, baseline = run_cold(cloud, fabric, flow, arm)
    expect_failed = method not in ("confirm_resize", "revert_resize")
    now = settle_and_check(cloud, fabric, inst, before, baseline, memory=False,
                           expect_failed=expect_failed)
    if method in ("confirm_resize", "revert_resize"):
        assert now.vm_state == VMState.RESIZED  # refused before it left: retry later
        fabric.faults.clear()
        (cloud.api.confirm_resize if method == "confirm_resize" else
         cloud.api.revert_resize)(cloud.ctx, inst.uuid)
        check_intact(cloud, fabric, cloud.api.wait(cloud.ctx, inst.uuid), before,
                     memory=False)


def test_cold_reschedules_to_an_alternate_host(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    baseline = usage(cloud)
    fabric.inject("prepare_migrate_disk_target", exc=InsufficientResources)
    api.resize(ctx, inst.uuid, "medium")
    now = api.wait(ctx, inst.uuid)
    assert now.vm_state == VMState.RESIZED
    migs = api.list_migrations(ctx, instance_uuid=inst.uuid)
    assert [m.status for m in migs] == [MigrationStatus.ERROR, MigrationStatus.FINISHED]
    assert migs[0].dest_host != migs[1].dest_host
    api.confirm_resize(ctx, inst.uuid)
    now = check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=False)
    check_claims(cloud, baseline, inst, now)


LIVE_DRIVER_FAULTS = [
    (["check_can_live_migrate_destination"], None),
    (["check_can_live_migrate_source"], None),
    (["cleanup_live_migration_destination_check"], None),
    (["get_instance_disk_info"], None),
    (["pre_live_migration"], None),
    (["pre_live_migration", "rollback_live_migration_at_destination"], None),
    (["live_migration"], None),
    (["live_migration.start"], None),
    (["live_migration.iteration"], None),
    (["live_migration.switchover"], None),
    (["live_migration.switchover", "rollback_live_migration_at_source"], None),
    (["post_live_migration"], None),
    (["post_live_migration_at_destination"], None),
    (["post_live_migration_at_source"], None),
]

LIVE_RPC_FAULTS = [
    "check_can_live_migrate_destination",
    "check_can_live_migrate_source",
    "live_migration",
    "pre_live_migration",
    "post_live_migration_at_destination",
    "rollback_live_migration_at_destination",  # with a pre_live_migration fault
]


def run_live(cloud, fabric, arm):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    baseline = usage(cloud)
    arm()
    try:
        api.live_migrate(ctx, inst.uuid)
    except VirtSDKError:
        pass  # a check failed synchronously: the API reports it
    except oslo_messaging.MessagingException:
        pass
    return inst, before, baseline


@pytest.mark.parametrize(("steps", "exc"), LIVE_DRIVER_FAULTS,
                         ids=lambda v: "+".join(v) if isinstance(v, list) else "")
def test_live_driver_fault(cloud, fabric, steps, exc):
    def arm():
        for step in steps:
            fabric.inject(step, exc=exc)
    inst, before, baseline = run_live(cloud, fabric, arm)
    now = settle_and_check(cloud, fabric, inst, before, baseline, memory=True)
    if steps[0].startswith(("pre_live", "live_migration")) and len(steps) == 1:
        assert (now.vm_state, now.host) == (VMState.ACTIVE, inst.host)  # rolled back
    if steps[0].startswith("post_"):
        assert now.host != inst.host  # the guest had moved: the record follows it


@pytest.mark.parametrize("method", LIVE_RPC_FAULTS)
def test_live_rpc_hop_lost(cloud, fabric, rpc_fault, method):
    def arm():
        rpc_fault(method)
        if method == "rollback_live_migration_at_destination":
            fabric.inject("pre_live_migration")
    inst, before, baseline = run_live(cloud, fabric, arm)
    settle_and_check(cloud, fabric, inst, before, baseline, memory=True)


def test_live_precheck_refusal_tries_next_host(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    fabric.inject("check_can_live_migrate_destination", exc=MigrationPreCheckError)
    mig = api.live_migrate(ctx, inst.uuid)
    moved = api.wait(ctx, inst.uuid)
    assert moved.host not in (inst.host,)
    assert api.get_migration(ctx, inst.uuid, mig.id).status == MigrationStatus.COMPLETED
    check_intact(cloud, fabric, moved, before, memory=True)


def test_boot_fault_leaves_nothing_and_error(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    fabric.inject("spawn")
    inst = api.create_instance(ctx, "doomed", "small")
    now = api.wait(ctx, inst.uuid)
    assert now.vm_state == VMState.ERROR and fabric.find(inst.uuid) == []
    events = api.list_actions(ctx, inst.uuid)[0].events
    assert [(e.event, e.result) for e in events] == [
        ("compute_build_and_run_instance", "Error")]
    assert "InjectedFault" in events[0].traceback
    api.delete_instance(ctx, inst.uuid)
    assert fabric.find(inst.uuid) == []


def test_delete_fault_keeps_the_instance(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    fabric.inject("destroy")
    with pytest.raises(VirtSDKError, match="injected"):
        api.delete_instance(ctx, inst.uuid)
    now = check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=True)
    assert now.vm_state == VMState.ERROR
    api.delete_instance(ctx, inst.uuid)
    assert fabric.find(inst.uuid) == []


@pytest.mark.parametrize("moved", [False, True], ids=["stayed", "moved"])
def test_driver_that_ends_without_post_or_recover(cloud, fabric, monkeypatch, moved):
    """A broken driver (mocked: the fake keeps its contract) returns without calling
    post_method or recover_method: the manager asks both hosts where the guest runs
    and settles the records accordingly."""
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    driver = cloud.computes["host1"].driver
    real = driver.live_migration

    def silent(context, instance, dest, post_method, recover_method, *args, **kwargs):
        if moved:
            real(context, instance, dest, lambda *a: None, lambda *a: None, *args, **kwargs)

    monkeypatch.setattr(driver, "live_migration", silent)
    mig = api.live_migrate(ctx, inst.uuid, host="host2")
    now = check_intact(cloud, fabric, api.wait(ctx, inst.uuid), before, memory=True)
    final = api.get_migration(ctx, inst.uuid, mig.id)
    if moved:  # the guest runs on host2: the record follows it, the flow is finished
        assert (now.host, now.vm_state, final.status) == ("host2", VMState.ACTIVE,
                                                          MigrationStatus.ERROR)
    else:
        assert (now.host, now.vm_state, final.status) == ("host1", VMState.ACTIVE,
                                                          MigrationStatus.FAILED)
    assert "without post or recover" in final.error


def _request_with_conductor_fault(api, ctx, inst, flow, error):
    """Ask for a resize or a live migration while the call to the conductor fails
    with ``error`` (raised where the message would leave); the API raises it."""
    def fail(method):
        raise error(f"injected: {method} failed")

    api.conductor.fault_hook = fail
    try:
        with pytest.raises(error):
            if flow == "resize":
                api.resize(ctx, inst.uuid, "medium")
            else:
                api.live_migrate(ctx, inst.uuid)
    finally:
        api.conductor.fault_hook = None


@pytest.mark.parametrize("flow", ["resize", "live"])
def test_request_the_conductor_never_received_changes_nothing(cloud, fabric, flow):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    _request_with_conductor_fault(api, ctx, inst, flow,
                                  oslo_messaging.MessageDeliveryFailure)
    now = api.wait(ctx, inst.uuid)
    assert (now.vm_state, now.task_state, now.host) == (VMState.ACTIVE, None, inst.host)
    assert api.list_migrations(ctx, instance_uuid=inst.uuid) == []
    settle_and_check(cloud, fabric, inst, before, usage(cloud), memory=True)


@pytest.mark.parametrize("flow", ["resize", "live"])
def test_request_lost_after_its_call_timed_out_is_settled_by_the_conductor(
        cloud, fabric, flow):
    """The call to the conductor times out and its message is gone (a broker restart
    drops queued messages; on RabbitMQ a call's message also expires with its
    timeout): the API leaves the task set, since the conductor might be working.  The
    conductor's periodic pass finds no flow behind the task and clears it, ending the
    action with the reason; the same request arriving late changes nothing."""
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    # what a lost message looks like to its caller
    _request_with_conductor_fault(api, ctx, inst, flow, oslo_messaging.MessagingTimeout)
    task = api.show_instance(ctx, inst.uuid).task_state
    assert task is not None  # the known state the conductor settles
    manager = cloud.conductor.manager
    assert manager.settle_lost_requests(ctx, older_than=3600) == []  # not old yet
    assert manager.settle_lost_requests(ctx, older_than=0) == [inst.uuid]
    now = api.wait(ctx, inst.uuid)
    assert (now.vm_state, now.task_state, now.host) == (VMState.ACTIVE, None, inst.host)
    last = api.list_actions(ctx, inst.uuid)[-1]
    assert last.finish_time is not None and "never reached a flow" in last.message
    assert api.list_migrations(ctx, instance_uuid=inst.uuid) == []
    # the lost message arriving after all: refused, nothing moves
    with pytest.raises(Conflict):
        api.conductor.migrate_server(ctx, now, {"host": None}, live=flow == "live",
                                     rebuild=False,
                                     flavor=None if flow == "live" else now.flavor,
                                     block_migration=None, disk_over_commit=False)
    assert api.list_migrations(ctx, instance_uuid=inst.uuid) == []
    settle_and_check(cloud, fabric, inst, before, usage(cloud), memory=True)


def test_lost_reschedule_restores_the_instance(cloud, fabric):
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric)
    baseline = usage(cloud)

    def lost(method):
        if method == "resize_instance":
            raise oslo_messaging.MessageDeliveryFailure("injected: reschedule lost")

    for service in cloud.computes.values():
        service.manager.conductor_rpc.fault_hook = lost
    fabric.inject("prepare_migrate_disk_target", exc=InsufficientResources)
    try:
        api.resize(ctx, inst.uuid, "medium")
        now = settle_and_check(cloud, fabric, inst, before, baseline, memory=False)
    finally:
        for service in cloud.computes.values():
            service.manager.conductor_rpc.fault_hook = None
    assert (now.vm_state, now.host) == (VMState.ACTIVE, inst.host)
