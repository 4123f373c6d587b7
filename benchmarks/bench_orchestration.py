"""Migrations per second through the whole orchestration stack on the fake driver.

API -> conductor (scheduler) -> compute managers -> fake driver, every hop over
``inproc://`` oslo.messaging, every state change in SQLite (WAL).  The fake driver runs
with ``time_scale = 0`` (simulated waits are instant), so the numbers are the cost of
the orchestration itself: RPC hops, database writes, threads.

* sequential: one cold migration (migrate + confirm) or one live migration at a time,
  each waited for; rate = 1 / median duration.
* concurrent: ``BATCH`` instances moved at once (live: per-host limits raised), rate =
  BATCH / wall time of the batch.

Run: ``.venv/bin/python -m pytest benchmarks/bench_orchestration.py -s``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from virtsdk_fake.fabric import drop_fabric

from benchmarks.measure import report
from virtsdk.cloud import EmbeddedCloud
from virtsdk.states import MigrationStatus, VMState

ROUNDS = 30
BATCH = 12


@pytest.fixture(scope="module")
def cloud() -> Iterator[EmbeddedCloud]:
    fabric = f"bench-{uuid.uuid4().hex[:8]}"
    c = EmbeddedCloud(("host1", "host2", "host3"), "fake",
                      state_path=tempfile.mkdtemp(prefix="virtsdk-bench-"),
                      overrides={"fake": {"fabric": fabric, "time_scale": 0.0,
                                          "host_vcpus": 512, "host_memory_mb": 1 << 20},
                                 "compute": {"max_concurrent_live_migrations_outbound": 0,
                                             "max_concurrent_live_migrations_inbound": 0,
                                             "queue_poll_interval": 0.002}})
    c.start()
    c.api.flavor_create(c.ctx, "small", 256, 1, 1)
    yield c
    c.stop()
    drop_fabric(fabric)


def _boot(cloud: EmbeddedCloud, n: int) -> list[str]:
    uuids = [cloud.api.create_instance(cloud.ctx, f"b{i}", "small").uuid for i in range(n)]
    for u in uuids:
        assert cloud.api.wait(cloud.ctx, u).vm_state == VMState.ACTIVE
    return uuids


def _cold(cloud: EmbeddedCloud, uuid_: str) -> None:
    api, ctx = cloud.api, cloud.ctx
    api.migrate(ctx, uuid_)
    assert api.wait(ctx, uuid_, poll=0.001).vm_state == VMState.RESIZED
    api.confirm_resize(ctx, uuid_)
    assert api.wait(ctx, uuid_, poll=0.001).vm_state == VMState.ACTIVE


def _live(cloud: EmbeddedCloud, uuid_: str) -> int:
    api, ctx = cloud.api, cloud.ctx
    mig = api.live_migrate(ctx, uuid_)
    api.wait(ctx, uuid_, poll=0.001)
    return int(mig.id or 0)


@pytest.mark.benchmark(group="orchestration")
def test_cold_migrations_sequential(benchmark, cloud):
    (u,) = _boot(cloud, 1)
    benchmark.pedantic(_cold, args=(cloud, u), rounds=ROUNDS, warmup_rounds=2)
    median = benchmark.stats.stats.median
    report(benchmark, "cold migration (migrate + confirm), one at a time",
           per_second=1 / median, median_ms=median * 1000)


@pytest.mark.benchmark(group="orchestration")
def test_live_migrations_sequential(benchmark, cloud):
    (u,) = _boot(cloud, 1)
    benchmark.pedantic(_live, args=(cloud, u), rounds=ROUNDS, warmup_rounds=2)
    median = benchmark.stats.stats.median
    last = cloud.api.list_migrations(cloud.ctx, instance_uuid=u)[-1]
    assert last.status == MigrationStatus.COMPLETED
    report(benchmark, "live migration, one at a time", per_second=1 / median,
           median_ms=median * 1000)


def _batch(cloud: EmbeddedCloud, uuids: list[str], live: bool) -> float:
    api, ctx = cloud.api, cloud.ctx
    start = time.perf_counter()
    for u in uuids:
        if live:
            api.live_migrate(ctx, u)
        else:
            api.migrate(ctx, u)
    for u in uuids:
        api.wait(ctx, u, poll=0.001)
    if not live:
        for u in uuids:
            api.confirm_resize(ctx, u)
        for u in uuids:
            api.wait(ctx, u, poll=0.001)
    return time.perf_counter() - start


@pytest.mark.benchmark(group="orchestration")
@pytest.mark.parametrize("kind", ["cold", "live"])
def test_migrations_concurrent(benchmark, cloud, kind):
    uuids = _boot(cloud, BATCH)
    walls = [_batch(cloud, uuids, kind == "live") for _ in range(3)]
    benchmark.pedantic(_batch, args=(cloud, uuids, kind == "live"), rounds=1)
    walls.append(benchmark.stats.stats.median)
    wall = statistics.median(walls)
    for u in uuids:
        assert cloud.api.show_instance(cloud.ctx, u).vm_state == VMState.ACTIVE
    report(benchmark, f"{kind} migrations, {BATCH} at once", per_second=BATCH / wall,
           batch_s=wall)
