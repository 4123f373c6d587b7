"""Draining a host on the fake driver (an embedded three-host cloud per test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from virtsdk_fake.fabric import Fabric, drop_fabric, get_fabric

from tests.orchestration.conftest import boot, check_intact, make_cloud
from virtsdk.cloud import EmbeddedCloud
from virtsdk.db.records import Drain
from virtsdk.exceptions import Conflict, DrainRefused, HostNotFound
from virtsdk.services import COMPUTE
from virtsdk.states import VMState


@pytest.fixture
def cloud(tmp_path: Any) -> Iterator[EmbeddedCloud]:
    c = make_cloud(tmp_path, compute={"max_concurrent_live_migrations_outbound": 2,
                                      "max_concurrent_live_migrations_inbound": 1})
    yield c
    get_fabric(c.conf.fake.fabric).faults.clear()
    c.api.stop_drains()
    c.stop()
    drop_fabric(c.conf.fake.fabric)


@pytest.fixture
def fabric(cloud: EmbeddedCloud) -> Fabric:
    return get_fabric(cloud.conf.fake.fabric)


def guests(cloud: EmbeddedCloud, fabric: Fabric, n: int, flavor: str = "small",
           host: str = "host1") -> list[tuple[Any, dict[str, Any]]]:
    return [boot(cloud, fabric, flavor, host=host) for _ in range(n)]


def each_once(cloud: EmbeddedCloud, fabric: Fabric,
              booted: list[tuple[Any, dict[str, Any]]]) -> None:
    """Every guest is settled, runs exactly once where its record says, intact."""
    for inst, before in booted:
        now = check_intact(cloud, fabric, inst, before, memory=True)
        assert now.vm_state == VMState.ACTIVE


def disabled(cloud: EmbeddedCloud, host: str) -> bool:
    svc = cloud.db.service_get(host, COMPUTE)
    assert svc is not None
    return svc.disabled


def overlaps(drain: Drain) -> tuple[int, dict[str, int]]:
    """Most migrations the drain ran at once, overall and into each host."""
    spans = [(g.started_at, g.finished_at, g.dest_host) for g in drain.guests
             if g.started_at and g.finished_at]
    most, per = 0, {}
    for t, _, _ in spans:
        now = [d for s, e, d in spans if s <= t < e]
        most = max(most, len(now))
        for d in set(now):
            per[d] = max(per.get(d, 0), now.count(d))
    return most, per


def test_drain_moves_every_guest_live_within_the_limits(cloud: EmbeddedCloud,
                                                        fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 5)
    plan = api.drain_plan(ctx, "host1")
    assert len(plan.moves) == 5 and not plan.stuck
    assert plan.concurrency <= 2
    drain = api.drain_host(ctx, "host1")
    assert disabled(cloud, "host1")
    done = api.drain_wait(ctx, drain.id, timeout=60)
    assert done.status == "complete", [(g.status, g.error, g.tried_hosts) for g in done.guests]
    assert not api.list_instances(ctx, "host1")
    assert {g.status for g in done.guests} == {"done"}
    assert all(g.mode == "live" and g.dest_host in ("host2", "host3") and
               g.migration_id is not None and g.downtime_ms is not None
               for g in done.guests)
    most, per = overlaps(done)
    assert most <= 2 and all(v <= 1 for v in per.values()), (most, per)
    each_once(cloud, fabric, booted)
    # new guests do not land on the drained host until it is enabled again
    inst, _ = boot(cloud, fabric)
    assert inst.host != "host1"
    api.enable_host(ctx, "host1")
    assert not disabled(cloud, "host1")
    assert api.drain_list(ctx, "host1")[-1].plan["moves"]


def test_capacity_is_respected_and_a_guest_that_fits_nowhere_stays(
        tmp_path: Any) -> None:
    c = make_cloud(tmp_path, fake={"host_capacity": {
        "host2": "8/1024/100", "host3": "8/1024/100"}})
    try:
        fab = get_fabric(c.conf.fake.fabric)
        api, ctx = c.api, c.ctx
        booted = [boot(c, fab, "medium", host="host1") for _ in range(5)]
        drain = api.drain_wait(ctx, api.drain_host(ctx, "host1").id, timeout=60)
        assert drain.status == "incomplete"
        by = {g.status for g in drain.guests}
        assert by == {"done", "stuck"}, [(g.status, g.error, g.tried_hosts) for g in drain.guests]
        assert sum(g.status == "done" for g in drain.guests) == 4
        stuck = [g for g in drain.guests if g.status == "stuck"]
        assert "capacity" in stuck[0].error
        for host, limit in (("host2", 1024), ("host3", 1024)):
            assert c.db.host_usage(host).memory_mb <= limit
        for inst, before in booted:
            check_intact(c, fab, inst, before, memory=True)
        assert c.db.instance_get(stuck[0].instance_uuid).host == "host1"
    finally:
        c.api.stop_drains()
        c.stop()
        drop_fabric(c.conf.fake.fabric)


def test_failed_guest_is_retried_once_elsewhere(cloud: EmbeddedCloud,
                                                fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 1)
    dest = api.drain_plan(ctx, "host1").moves[0].dest
    fabric.inject("pre_live_migration", host=dest)
    drain = api.drain_wait(ctx, api.drain_host(ctx, "host1").id, timeout=60)
    assert drain.status == "complete", drain
    g = drain.guests[0]
    assert g.attempts == 2 and g.tried_hosts == [dest] and g.dest_host != dest
    assert len(g.migration_ids) == 2
    each_once(cloud, fabric, booted)


def test_guest_failing_everywhere_is_reported_and_left_running(
        cloud: EmbeddedCloud, fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 2)
    bad = booted[0][0].uuid
    fabric.inject("pre_live_migration", host="host2", times=None)
    fabric.inject("pre_live_migration", host="host3", times=None)
    drain = api.drain_wait(ctx, api.drain_host(ctx, "host1").id, timeout=60)
    assert drain.status == "incomplete"
    assert [g.status for g in drain.guests] == ["failed", "failed"]
    assert all(g.attempts == 2 and sorted(g.tried_hosts) == ["host2", "host3"]
               for g in drain.guests)
    assert cloud.db.instance_get(bad).host == "host1"
    each_once(cloud, fabric, booted)


def test_abort_mid_drain(cloud: EmbeddedCloud, fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 4)
    stall = fabric.stall("live_migration.iteration", host="host1", times=None)
    drain = api.drain_host(ctx, "host1")
    assert stall.wait_reached(10)
    assert api.drain_abort(ctx, "host1").status == "aborting"
    stall.release()
    done = api.drain_wait(ctx, drain.id, timeout=60)
    assert done.status == "incomplete" and "abort" in done.message
    assert {g.status for g in done.guests} <= {"done", "aborted"}
    assert any(g.status == "aborted" for g in done.guests)
    each_once(cloud, fabric, booted)
    assert disabled(cloud, "host1")
    api.enable_host(ctx, "host1")


def test_source_compute_crash_mid_drain_ends_consistently(cloud: EmbeddedCloud,
                                                          fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 3)
    stall = fabric.stall("live_migration.iteration", host="host1")
    drain = api.drain_host(ctx, "host1")
    assert stall.wait_reached(10)
    # the drain's own process goes too: its loop stops with the record left running
    api.stop_drains()
    cloud.stop_compute("host1", crash=True)
    cloud.start_compute("host1")
    stall.release()
    # a new API object in a new process picks the drain up from its record
    from virtsdk.api import API

    api2 = API(cloud.conf, cloud.db)
    try:
        assert [d.id for d in api2.drain_resume(ctx)] == [drain.id]
        done = api2.drain_wait(ctx, drain.id, timeout=60)
    finally:
        api2.stop_drains()
    assert done.status == "complete", [(g.status, g.error, g.tried_hosts) for g in done.guests]
    assert any(g.attempts == 2 for g in done.guests)
    each_once(cloud, fabric, booted)


def test_destination_compute_crash_mid_drain_ends_consistently(cloud: EmbeddedCloud,
                                                               fabric: Fabric) -> None:
    """The compute service of a destination dies (fenced, as with kill -9) while a
    drain's migration into it runs, and comes back: the drain still ends, every guest
    runs exactly once where its record says, none left in a task."""
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 3)
    stall = fabric.stall("live_migration.iteration", host="host1")
    drain = api.drain_host(ctx, "host1")
    assert stall.wait_reached(10)
    running = [g for g in api.drain_get(ctx, drain.id).guests if g.status == "migrating"]
    dest = running[0].dest_host
    assert dest is not None
    cloud.stop_compute(dest, crash=True)
    cloud.start_compute(dest)
    stall.release()
    done = api.drain_wait(ctx, drain.id, timeout=60)
    assert done.status in ("complete", "incomplete"), done
    assert {g.status for g in done.guests} <= {"done", "failed"}, \
        [(g.status, g.error) for g in done.guests]
    for g in done.guests:
        inst = cloud.db.instance_get(g.instance_uuid)
        assert inst.task_state is None
        assert inst.host == (g.dest_host if g.status == "done" else "host1"), (g, inst)
    each_once(cloud, fabric, booted)


def test_no_destination_with_room_refused_up_front(tmp_path: Any) -> None:
    c = make_cloud(tmp_path, fake={"host_capacity": {
        "host2": "8/256/100", "host3": "8/256/100"}})
    try:
        fab = get_fabric(c.conf.fake.fabric)
        boot(c, fab, "medium", host="host1")
        with pytest.raises(DrainRefused, match="none of its 1 guest") as err:
            c.api.drain_host(c.ctx, "host1")
        assert "capacity" in str(err.value) and "Traceback" not in str(err.value)
        assert not disabled(c, "host1") and not c.api.drain_list(c.ctx, "host1")
    finally:
        c.stop()
        drop_fabric(c.conf.fake.fabric)


def test_no_destination_refused_up_front(cloud: EmbeddedCloud, fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    guests(cloud, fabric, 1)
    for host in ("host2", "host3"):
        cloud.db.service_update(host, COMPUTE, {"disabled": True})
    with pytest.raises(DrainRefused, match="no other compute host") as err:
        api.drain_host(ctx, "host1")
    assert "Traceback" not in str(err.value)
    assert not disabled(cloud, "host1") and not api.drain_list(ctx, "host1")
    with pytest.raises(HostNotFound):
        api.drain_host(ctx, "nosuchhost")


def test_second_drain_and_enable_while_draining_conflict(cloud: EmbeddedCloud,
                                                         fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 2)
    stall = fabric.stall("live_migration.iteration", host="host1")
    drain = api.drain_host(ctx, "host1")
    assert stall.wait_reached(10)
    with pytest.raises(Conflict):
        api.drain_host(ctx, "host1")
    with pytest.raises(Conflict):
        api.enable_host(ctx, "host1")
    stall.release()
    assert api.drain_wait(ctx, drain.id, timeout=60).status == "complete"
    each_once(cloud, fabric, booted)


def test_cold_drain_confirms_and_moves_everything(cloud: EmbeddedCloud,
                                                  fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    booted = guests(cloud, fabric, 2)
    drain = api.drain_wait(ctx, api.drain_host(ctx, "host1", live=False).id, timeout=60)
    assert drain.status == "complete", drain
    assert {g.mode for g in drain.guests} == {"cold"}
    assert all(len(g.migration_ids) == 1 for g in drain.guests)
    for inst, before in booted:
        now = check_intact(cloud, fabric, inst, before, memory=False)
        assert now.vm_state == VMState.ACTIVE and now.host != "host1"


def test_empty_host_drains_at_once(cloud: EmbeddedCloud) -> None:
    api, ctx = cloud.api, cloud.ctx
    drain = api.drain_wait(ctx, api.drain_host(ctx, "host3").id, timeout=30)
    assert drain.status == "complete" and not drain.guests
    api.enable_host(ctx, "host3")


def test_a_second_drain_plans_with_the_measured_dirty_rates(cloud: EmbeddedCloud,
                                                           fabric: Fabric) -> None:
    api, ctx = cloud.api, cloud.ctx
    inst, _ = boot(cloud, fabric, "large", host="host1",
                   metadata={"fake:dirty_rate_mbps": "200"})
    first = api.drain_plan(ctx, "host1").moves[0]
    assert first.duration_s == pytest.approx(4096 / 1024)  # unknown: the default, 0
    done = api.drain_wait(ctx, api.drain_host(ctx, "host1").id, timeout=60)
    assert done.status == "complete"
    where = cloud.db.instance_get(inst.uuid).host
    assert where is not None
    again = api.drain_plan(ctx, where).moves[0]
    assert again.duration_s > first.duration_s  # dirtying memory: slower than a quiet guest


@pytest.mark.parametrize("args,kw,error", [
    ((123,), {}, "InvalidHostname"), (("",), {}, "InvalidHostname"),
    (("host1",), {"live": "yes"}, "InvalidInput"),
    (("host1",), {"allow_cold": None}, "InvalidInput"),
])
def test_bad_drain_input_is_refused_with_a_typed_error(cloud: EmbeddedCloud, args: Any,
                                                       kw: Any, error: str) -> None:
    with pytest.raises(Exception) as err:
        cloud.api.drain_host(cloud.ctx, *args, **kw)
    assert type(err.value).__name__ == error and "Traceback" not in str(err.value)
    assert not disabled(cloud, "host1")


@pytest.mark.parametrize("bad", ["1", True, 2**70, -1, None])
def test_bad_drain_ids(cloud: EmbeddedCloud, bad: Any) -> None:
    from virtsdk.exceptions import DrainNotFound, InvalidInput

    with pytest.raises((InvalidInput, DrainNotFound)):
        cloud.api.drain_wait(cloud.ctx, bad, timeout=0.1)
    with pytest.raises((InvalidInput, DrainNotFound)):
        cloud.api.drain_get(cloud.ctx, bad)
