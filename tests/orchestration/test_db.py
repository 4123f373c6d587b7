"""The persistence layer: guarded saves, monotonic progress, claims, live slots."""

from __future__ import annotations

import threading

import pytest

from virtsdk.db import Database
from virtsdk.db.migration import db_sync
from virtsdk.exceptions import (
    Conflict,
    FlavorNotFound,
    InstanceInvalidState,
    InstanceNotFound,
    UnexpectedTaskState,
)
from virtsdk.objects import Flavor, Instance, Migration
from virtsdk.states import MigrationStatus, MigrationType, TaskState, VMState

SMALL = Flavor("small", 256, 1, 1)
BIG = Flavor("big", 1024, 4, 10)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/t.sqlite"
    else:
        url = request.getfixturevalue("postgres_url")
    db_sync(url)
    d = Database(url)
    yield d
    d.dispose()


def test_instance_round_trip_and_guarded_update(db):
    inst = Instance("vm", SMALL, host="h1", vm_state=VMState.ACTIVE,
                    metadata={"k": "v"}, system_metadata={"a": "b"})
    db.instance_create(inst)
    assert db.instance_get(inst.uuid) == inst
    saved = db.instance_update(inst.uuid, {"task_state": TaskState.RESIZE_PREP,
                                           "new_flavor": BIG}, expected_task_state=None)
    assert saved.task_state == TaskState.RESIZE_PREP and saved.new_flavor == BIG
    with pytest.raises(UnexpectedTaskState) as err:
        db.instance_update(inst.uuid, {"task_state": TaskState.MIGRATING},
                           expected_task_state=None)
    assert err.value.actual == "resize_prep"
    assert isinstance(err.value, Conflict)
    with pytest.raises(InstanceInvalidState, match="vm_state"):
        db.instance_update(inst.uuid, {"task_state": None},
                           expected_vm_state=VMState.RESIZED)
    db.instance_update(inst.uuid, {"task_state": None},
                       expected_task_state=(TaskState.RESIZE_PREP, TaskState.MIGRATING))
    db.instance_destroy(inst.uuid)
    with pytest.raises(InstanceNotFound):
        db.instance_get(inst.uuid)
    assert db.instance_get(inst.uuid, read_deleted=True).vm_state == VMState.DELETED


def test_guarded_update_lets_exactly_one_thread_win(db):
    inst = Instance("vm", SMALL, host="h1", vm_state=VMState.ACTIVE)
    db.instance_create(inst)
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def grab(i):
        barrier.wait()
        try:
            db.instance_update(inst.uuid, {"task_state": TaskState.MIGRATING},
                               expected_task_state=None)
            wins.append(i)
        except UnexpectedTaskState:
            pass

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_flavors(db):
    db.flavor_create(SMALL)
    with pytest.raises(Conflict):
        db.flavor_create(SMALL)
    assert db.flavor_get("small") == SMALL
    with pytest.raises(FlavorNotFound):
        db.flavor_get("nope")
    assert db.flavor_list() == [SMALL]


def test_progress_never_decreases_and_status_guard(db):
    m = db.migration_create(Migration("u1", "h1", MigrationType.LIVE, dest_host="h2",
                                      status=MigrationStatus.RUNNING))
    assert db.migration_record_progress(m.id, {"progress": 40, "memory_remaining": 9}) == 40
    assert db.migration_record_progress(m.id, {"progress": 10, "memory_remaining": 12},
                                        details={"downtime_ms": 5}) == 40
    got = db.migration_get(m.id)
    assert (got.progress, got.memory_remaining) == (40, 12)
    assert db.migration_details(m.id) == {"downtime_ms": 5}
    with pytest.raises(Conflict, match="running"):
        db.migration_update(m.id, {"status": MigrationStatus.COMPLETED},
                            expected_status=MigrationStatus.QUEUED)


def test_downtime_steps_append_only_when_the_max_downtime_changes(db):
    m = db.migration_create(Migration("u1", "h1", MigrationType.LIVE, dest_host="h2",
                                      status=MigrationStatus.RUNNING))
    assert db.migration_get(m.id).downtime_steps == [] and db.migration_details(m.id) == {}
    for allowed in (0, 50, 50, 95, 95, 0, 140):  # 0: no step applied / not known
        db.migration_record_progress(m.id, {"progress": 10}, max_downtime_ms=allowed)
    assert db.migration_get(m.id).downtime_steps == [50, 95, 140]
    assert db.migration_details(m.id)["downtime_steps"] == [50, 95, 140]
    assert [x.downtime_steps for x in db.migration_get_all(instance_uuid="u1")] == [
        [50, 95, 140]]
    db.migration_update(m.id, {"downtime_steps": [7]})
    assert db.migration_get(m.id).downtime_steps == [7]
    stored = db.migration_create(Migration("u2", "h1", MigrationType.LIVE,
                                           downtime_steps=[1, 2]))
    assert db.migration_get(stored.id).downtime_steps == [1, 2]


def test_host_usage_counts_instances_and_migration_claims(db):
    a = Instance("a", SMALL, host="h1")
    db.instance_create(a)
    assert db.host_usage("h1").memory_mb == 256 and db.host_usage("h2").memory_mb == 0
    m = db.migration_create(Migration(a.uuid, "h1", MigrationType.RESIZE, dest_host="h2",
                                      status=MigrationStatus.PRE_MIGRATING,
                                      old_flavor=SMALL, new_flavor=BIG))
    assert db.host_usage("h2").memory_mb == 1024          # incoming claim
    db.instance_update(a.uuid, {"host": "h2", "flavor": BIG})
    db.migration_update(m.id, {"status": MigrationStatus.FINISHED})
    assert db.host_usage("h1").memory_mb == 256           # kept copy until confirm
    assert db.host_usage("h2").memory_mb == 1024
    db.migration_update(m.id, {"status": MigrationStatus.CONFIRMED})
    assert db.host_usage("h1").memory_mb == 0
    db.migration_create(Migration(a.uuid, "h2", MigrationType.RESIZE, dest_host="h2",
                                  status=MigrationStatus.MIGRATING, old_flavor=BIG,
                                  new_flavor=Flavor("bigger", 2048, 4, 10)))
    assert db.host_usage("h2").memory_mb == 1024 + 2048   # same host holds both


def test_live_slots_respect_outbound_and_inbound_limits(db):
    def live(src, dst):
        return db.migration_create(Migration("u", src, MigrationType.LIVE, dest_host=dst,
                                             status=MigrationStatus.QUEUED))
    first, second, third = live("h1", "h2"), live("h1", "h3"), live("h4", "h2")
    assert db.migration_claim_live_slot(first.id, 1, 1) == "started"
    assert db.migration_claim_live_slot(second.id, 1, 0) == "wait"     # h1 outbound full
    assert db.migration_claim_live_slot(third.id, 0, 1) == "wait"      # h2 inbound full
    assert db.migration_claim_live_slot(third.id, 0, 2) == "started"
    db.migration_update(second.id, {"status": MigrationStatus.CANCELLED})
    assert db.migration_claim_live_slot(second.id, 0, 0) == "settled"
