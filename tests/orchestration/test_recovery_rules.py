"""One crash-and-restart test for every row of the recovery table
(:data:`virtsdk.compute.recovery.RULES`).

Each scenario holds a flow at a step (a stall in the fake driver, or in an RPC send),
so the migration has the row's status, kills the row's host (``crash=True``: its
threads are fenced) and starts it again.  Then the held step is released and the
outcome checked: the instance settled (no task, no migration left in progress unless
it waits for confirm), on exactly one host (the one the database names) with its
disks intact, the crashed incarnation wrote nothing, and the audit finds nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from virtsdk_fake.fabric import get_fabric

from tests.orchestration.conftest import boot, check_intact, own_cloud
from virtsdk.audit import audit_cloud
from virtsdk.compute.recovery import RULES, RecoveryRule, find_rule
from virtsdk.db.api import IN_PROGRESS
from virtsdk.states import VMState


@pytest.fixture
def cloud(tmp_path) -> Iterator:
    with own_cloud(tmp_path, api={"rpc_call_timeout": 3}) as c:
        yield c


@dataclass(frozen=True)
class Scenario:
    flow: str            # resize | confirm | revert | live (the request that is held)
    step: str            # fake-driver step held, or "rpc:<method>" for an RPC send
    held_on: str         # host whose step is held
    crash: str           # host whose service is killed and restarted
    #: the held thread dies at the step (it belonged to the crashed process)
    dies: bool = True
    #: how a resize left waiting is ended after the checks: confirm_resize or revert_resize
    end: str = "confirm"
    #: vm_state the instance must have after the restart ("" = any settled one)
    expect: str = ""


# source host1, destination host2 in every scenario; keyed by
# (flow, the migration status while held, which host restarts)
SCENARIOS: dict[tuple[str, str, str], Scenario] = {
    ("cold", "pre-migrating", "source"): Scenario(
        "resize", "prepare_migrate_disk_target", "host2", "host1", dies=False),
    ("cold", "migrating", "source"): Scenario(
        "resize", "migrate_disk.transfer", "host1", "host1"),
    ("cold", "pre-migrating", "destination"): Scenario(
        "resize", "prepare_migrate_disk_target", "host2", "host2"),
    ("cold", "migrating", "destination"): Scenario(
        "resize", "migrate_disk.transfer", "host1", "host2", dies=False),
    ("cold", "post-migrating", "source"): Scenario(
        "resize", "rpc:finish_resize", "host1", "host1"),
    ("cold", "post-migrating", "destination"): Scenario(
        "resize", "finish_migration", "host2", "host2"),
    ("cold", "finished", "source"): Scenario("resized", "", "", "host1"),
    ("cold", "finished", "destination"): Scenario("resized", "", "", "host2"),
    ("cold", "confirming", "source"): Scenario(
        "confirm", "confirm_migration", "host1", "host1"),
    ("cold", "confirming", "destination"): Scenario(
        "confirm", "confirm_migration", "host1", "host2", dies=False),
    ("cold", "reverting", "destination"): Scenario("revert", "destroy", "host2", "host2"),
    ("cold", "reverting", "source"): Scenario(
        "revert", "finish_revert_migration", "host1", "host1"),
    ("live", "accepted", "source"): Scenario(
        "live", "check_can_live_migrate_source", "host1", "host1"),
    ("live", "preparing", "source"): Scenario(
        "live", "pre_live_migration", "host2", "host1", dies=False),
    ("live", "running", "source"): Scenario(
        "live", "live_migration.iteration", "host1", "host1", dies=False),
    ("live", "accepted", "destination"): Scenario(
        "live", "check_can_live_migrate_destination", "host2", "host2"),
    ("live", "preparing", "destination"): Scenario(
        "live", "pre_live_migration", "host2", "host2"),
    ("live", "running", "destination"): Scenario(
        "live", "live_migration.iteration", "host1", "host2", dies=False),
}


def scenario_rule(key: tuple[str, str, str]) -> RecoveryRule:
    flow, status, restarted = key
    (rule,) = [r for r in RULES if (r.flow, r.restarted) == (flow, restarted)
               and status in r.statuses]
    return rule


def test_every_rule_has_a_scenario():
    covered = {scenario_rule(k) for k in SCENARIOS}
    assert [r for r in RULES if r not in covered] == []


#: more crash points for a row, each between two steps the table's scenario does
#: not separate; keyed like :data:`SCENARIOS` plus a name
MORE_SCENARIOS: dict[tuple[str, str, str, str], Scenario] = {
    # the source stored 'post-migrating' and dies before it stores the instance's
    # task 'resize_migrated' (still 'resize_migrating')
    ("cold", "post-migrating", "source", "before-task"): Scenario(
        "resize", "db:resize_migrated", "host1", "host1"),
    # the destination stored 'finished' in finish_resize and dies before it stores
    # the instance's vm_state 'resized' (task still 'resize_finish'); ended by
    # confirm, and again by revert (the source's kept copy comes back)
    ("cold", "finished", "destination", "before-resized"): Scenario(
        "resize", "db:resized", "host2", "host2", expect="resized"),
    ("cold", "finished", "destination", "before-resized-revert"): Scenario(
        "resize", "db:resized", "host2", "host2", end="revert",
        expect="resized"),
}


class RpcStall:
    """Hold the next send of one compute RPC method from one manager."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.reached = threading.Event()
        self.released = threading.Event()

    def hook(self, method: str, host: str) -> None:
        if method == self.method and not self.reached.is_set():
            self.reached.set()
            self.released.wait(30)

    def wait_reached(self, timeout: float) -> bool:
        return self.reached.wait(timeout)

    def release(self) -> None:
        self.released.set()


class TaskWriteStall(RpcStall):
    """Hold a flow's next write of one task state, or of one vm_state (the database
    write, not yet done)."""

    def __init__(self, db: Any, task_state: str) -> None:
        super().__init__(task_state)
        self.db = db

    def instance_update(self, uuid: str, values: dict[str, Any], **kwargs: Any) -> Any:
        if self.method in (str(values.get("task_state")), str(values.get("vm_state"))):
            self.hook(self.method, "")
        return self.db.instance_update(uuid, values, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def hold(cloud, fabric, sc: Scenario):
    if sc.step.startswith("db:"):
        flow = cloud.computes[sc.held_on].manager.cold
        stall = TaskWriteStall(flow.db, sc.step[3:])
        flow.db = stall
        return stall
    if sc.step.startswith("rpc:"):
        stall = RpcStall(sc.step[4:])
        cloud.computes[sc.held_on].manager.compute_rpc.fault_hook = stall.hook
        return stall
    stall = fabric.stall(sc.step, host=sc.held_on)
    if sc.dies:
        fabric.inject(sc.step, host=sc.held_on)
    return stall


def start_flow(cloud, sc: Scenario, uuid: str) -> Callable[[], None]:
    api, ctx = cloud.api, cloud.ctx
    return {"resize": lambda: api.migrate(ctx, uuid, host="host2"),
            "confirm": lambda: api.confirm_resize(ctx, uuid),
            "revert": lambda: api.revert_resize(ctx, uuid),
            "live": lambda: api.live_migrate(ctx, uuid, host="host2")}[sc.flow]


@pytest.mark.parametrize("key", sorted(SCENARIOS), ids="-".join)
def test_recovery_rule(cloud, key):
    run_scenario(cloud, SCENARIOS[key], scenario_rule(key))


@pytest.mark.parametrize("key", sorted(MORE_SCENARIOS), ids="-".join)
def test_recovery_rule_more(cloud, key):
    run_scenario(cloud, MORE_SCENARIOS[key], scenario_rule(key[:3]))


def run_scenario(cloud, sc: Scenario, rule: RecoveryRule) -> None:
    fabric = get_fabric(cloud.conf.fake.fabric)
    api, ctx = cloud.api, cloud.ctx
    inst, before = boot(cloud, fabric, host="host1")
    if sc.flow in ("confirm", "revert", "resized"):
        api.migrate(ctx, inst.uuid, host="host2")
        assert api.wait(ctx, inst.uuid).vm_state == VMState.RESIZED
    stall = None
    caller = None
    if sc.step:
        stall = hold(cloud, fabric, sc)
        caller = threading.Thread(target=_swallow(start_flow(cloud, sc, inst.uuid)))
        caller.start()
        assert stall.wait_reached(10)
    mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
    assert find_rule(mig, sc.crash) == rule, (mig.status, sc)
    zombie = cloud.computes[sc.crash].manager
    cloud.stop_compute(sc.crash, crash=True)
    cloud.start_compute(sc.crash)
    if stall is not None:
        stall.release()
    if caller is not None:
        caller.join(30)
        assert not caller.is_alive()
    if sc.step and sc.dies and sc.held_on == sc.crash:
        settle_zombie(zombie)
    if sc.step and not sc.dies and sc.held_on != sc.crash:
        # the held handler of the live service goes on after release: it removes
        # what it prepared once it sees the migration settled; let it finish
        wait_events_finished(cloud.db, inst.uuid, sc.held_on)
    now = api.wait(ctx, inst.uuid, timeout=30)
    assert now.task_state is None, now
    if sc.expect:
        assert (now.vm_state, now.host) == (sc.expect, "host2"), now
    open_migs = cloud.db.migration_get_all(instance_uuid=inst.uuid, statuses=IN_PROGRESS)
    assert not open_migs or now.vm_state == VMState.RESIZED, open_migs
    check_intact(cloud, fabric, now, before, memory=sc.flow == "live")
    report = audit_cloud(cloud.conf, cloud.db, ctx)
    assert report.differences == [], report.differences
    if now.vm_state == VMState.RESIZED:
        if sc.end == "revert":
            api.revert_resize(ctx, inst.uuid)
        else:
            api.confirm_resize(ctx, inst.uuid)
        done = api.wait(ctx, inst.uuid)
        assert (done.task_state, done.vm_state, done.host) == (
            None, VMState.ACTIVE, "host1" if sc.end == "revert" else "host2"), done
        check_intact(cloud, fabric, done, before, memory=False)
        report = audit_cloud(cloud.conf, cloud.db, ctx)
        assert report.differences == [], report.differences


def wait_events_finished(db, uuid: str, host: str, timeout: float = 30.0) -> None:
    """Wait (bounded) until every action event of ``uuid`` on ``host`` has finished:
    a released handler of a live service has then done all it does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = [e for a in db.actions_get(uuid) for e in a.events if e.host == host]
        if events and all(e.finish_time is not None for e in events):
            return
        time.sleep(0.01)


def settle_zombie(manager, timeout: float = 2.0) -> None:
    """Give the released thread of the crashed incarnation time to try a write
    (refused by the fence); a held step whose handler writes nothing afterwards
    (an RPC call answering an error) ends without one."""
    deadline = time.monotonic() + timeout
    while manager.fence.refused == 0 and time.monotonic() < deadline:
        time.sleep(0.01)


def _swallow(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - a refused request is a valid outcome here
            pass
    return run
