"""Draining a host of 12 guests on the fake driver: the planned drain against
today's two ways, in one run.

Each strategy gets a fresh embedded cloud (host1 to drain, host2..host4 to receive;
per-host limits: 3 outbound, 2 inbound live migrations) with the same 12 guests of
mixed size (512..4096 MiB) and dirty rate (0..300 MiB/s, the fake driver's
``fake:dirty_rate_mbps``), and the fake driver's pre-copy model on its scaled clock
(1024 MiB/s per migration stream).  Time is *simulated* seconds measured on that
clock from the first request until host1 is empty (the orchestration's real time,
RPC and database, is in it too, scaled the same way for all three).

* naive: Nova's ``host-evacuate-live`` loop done one by one: live-migrate a guest
  (the scheduler picks), wait, next.
* all at once: every live migration requested at once (the scheduler picks each
  destination; the compute hosts queue them under their limits, in request order).
* planned: ``API.drain_host`` (the planner's order and destinations, re-planned as
  migrations finish).

Every guest must end on another host, running, and no guest's measured downtime may
exceed ``[live_migration] downtime`` (its budget).  The planner knows no dirty rate
here (no earlier migration measured one), only the sizes and the limits.

Run: ``.venv/bin/python -m pytest benchmarks/bench_drain.py -s``.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from virtsdk_fake.fabric import drop_fabric, get_fabric

from benchmarks.measure import report
from virtsdk.cloud import EmbeddedCloud
from virtsdk.states import MigrationStatus, MigrationType, VMState

TIME_SCALE = 0.1
#: (flavor, dirty MiB/s) of the 12 guests, in the order they were booted
GUESTS = [("m4096", 300), ("m512", 0), ("m2048", 100), ("m1024", 250),
          ("m4096", 0), ("m512", 200), ("m2048", 0), ("m1024", 50),
          ("m4096", 150), ("m512", 100), ("m2048", 300), ("m1024", 0)]


def _cloud() -> EmbeddedCloud:
    fabric = f"bench-drain-{uuid.uuid4().hex[:8]}"
    c = EmbeddedCloud(("host1", "host2", "host3", "host4"), "fake",
                      state_path=tempfile.mkdtemp(prefix="virtsdk-bench-"),
                      overrides={"fake": {"fabric": fabric, "time_scale": TIME_SCALE,
                                          "host_vcpus": 64, "host_memory_mb": 65536},
                                 "compute": {"max_concurrent_live_migrations_outbound": 3,
                                             "max_concurrent_live_migrations_inbound": 2,
                                             "report_interval": 0.5,
                                             "queue_poll_interval": 0.005},
                                 "drain": {"poll_interval": 0.01}})
    c.start()
    for mem in (512, 1024, 2048, 4096):
        c.api.flavor_create(c.ctx, f"m{mem}", mem, 1, 1)
    return c


def _boot(c: EmbeddedCloud) -> list[str]:
    uuids = []
    for i, (flavor, dirty) in enumerate(GUESTS):
        inst = c.api.create_instance(c.ctx, f"g{i:02d}", flavor, host="host1",
                                     metadata={"fake:dirty_rate_mbps": str(dirty)})
        uuids.append(inst.uuid)
    for u in uuids:
        assert c.api.wait(c.ctx, u, timeout=120).vm_state == VMState.ACTIVE
    return uuids


def _naive(c: EmbeddedCloud, uuids: list[str]) -> None:
    for u in uuids:
        c.api.live_migrate(c.ctx, u)
        c.api.wait(c.ctx, u, timeout=600, poll=0.005)


def _all_at_once(c: EmbeddedCloud, uuids: list[str]) -> None:
    for u in uuids:
        c.api.live_migrate(c.ctx, u)
    for u in uuids:
        c.api.wait(c.ctx, u, timeout=600, poll=0.005)


def _planned(c: EmbeddedCloud, uuids: list[str]) -> None:
    drain = c.api.drain_host(c.ctx, "host1")
    assert c.api.drain_wait(c.ctx, drain.id, timeout=600).status == "complete"


def _run(strategy: Callable[[EmbeddedCloud, list[str]], None]) -> dict[str, Any]:
    c = _cloud()
    try:
        uuids = _boot(c)
        clock = get_fabric(c.conf.fake.fabric).clock
        start = clock.now()
        strategy(c, uuids)
        elapsed = clock.now() - start
        budget = c.conf.live_migration.downtime
        downtimes = []
        for u in uuids:
            inst = c.api.show_instance(c.ctx, u)
            assert inst.vm_state == VMState.ACTIVE and inst.host != "host1", inst
            migs = c.api.list_migrations(c.ctx, instance_uuid=u,
                                         migration_type=MigrationType.LIVE,
                                         status=MigrationStatus.COMPLETED)
            details = c.api.get_migration_details(c.ctx, int(migs[-1].id or 0))
            downtimes.append(int(details.get("downtime_ms", 0)))
        return {"sim_s": elapsed, "max_downtime_ms": max(downtimes), "budget_ms": budget,
                "over_budget": sum(d > budget for d in downtimes)}
    finally:
        c.api.stop_drains()
        c.stop()
        drop_fabric(c.conf.fake.fabric)


@pytest.mark.benchmark(group="drain")
def test_drain_planned_vs_naive_vs_all_at_once(benchmark: Any) -> None:
    naive = _run(_naive)
    crowd = _run(_all_at_once)
    results: dict[str, dict[str, Any]] = {}
    benchmark.pedantic(lambda: results.setdefault("planned", _run(_planned)), rounds=1)
    planned = results["planned"]
    for name, r in (("naive", naive), ("all at once", crowd), ("planned", planned)):
        print(f"\n{name:12s} drain {r['sim_s']:7.1f} simulated s, max downtime "
              f"{r['max_downtime_ms']} ms (budget {r['budget_ms']}), "
              f"{r['over_budget']} over budget")
    report(benchmark, "drain of 12 guests (simulated seconds)",
           naive_s=naive["sim_s"], all_at_once_s=crowd["sim_s"],
           planned_s=planned["sim_s"],
           speedup_vs_naive=naive["sim_s"] / planned["sim_s"],
           speedup_vs_all_at_once=crowd["sim_s"] / planned["sim_s"])
    assert planned["over_budget"] == 0
