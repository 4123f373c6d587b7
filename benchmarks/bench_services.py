"""A cloud of separate processes against the embedded cloud, and one conductor
serving many heartbeating hosts.

* ``test_processes_vs_embedded[sqlite|postgresql]``: full cold migrations (migrate +
  confirm) and live migrations on the fake driver (``time_scale = 0``), one at a time,
  through ``virtsdk-conductor`` and two ``virtsdk-compute`` processes on a private
  RabbitMQ (fabric shared through a directory, records in one SQLite file or in a
  private PostgreSQL cluster), against an :class:`~virtsdk.cloud.EmbeddedCloud`
  (``inproc://`` + SQLite) in the same run; medians and the ratio.
* ``test_conductor_scale``: one ``virtsdk-conductor`` process; 10, 50 and 200 simulated
  compute services (fake driver, each its own RPC server on the broker, heartbeating
  every second) in this process.  Reports the scheduler's latency (``select_destinations``
  over every host, median) and live migrations per second with 12 at once.

Run: ``.venv/bin/python -m pytest benchmarks/bench_services.py -s`` (as root: it starts
a private RabbitMQ node and PostgreSQL cluster (:mod:`virtsdk.testing.services`) and
stops them afterwards).
"""

from __future__ import annotations

import concurrent.futures
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from virtsdk_fake.fabric import drop_fabric

from benchmarks.measure import report
from virtsdk import rpc
from virtsdk.api import API
from virtsdk.cloud import EmbeddedCloud
from virtsdk.compute.service import ComputeService
from virtsdk.conductor.rpcapi import ConductorAPI
from virtsdk.context import get_admin_context
from virtsdk.db import migration
from virtsdk.db.api import Database
from virtsdk.scheduler.base import RequestSpec
from virtsdk.states import VMState
from virtsdk.testing.services import RabbitNode
from virtsdk.testing.services import postgres as postgres  # noqa: F401 - the fixtures
from virtsdk.testing.services import rabbit as rabbit  # noqa: F401

ROUNDS = 15
BATCH = 12
BIN = Path(sys.executable).parent
FAKE = {"time_scale": 0.0, "host_vcpus": 512, "host_memory_mb": 1 << 20}
LIMITS = {"max_concurrent_live_migrations_outbound": 0,
          "max_concurrent_live_migrations_inbound": 0, "queue_poll_interval": 0.002}


def _config(root: Path, url: str, fabric: str, shared: bool = True,
            db_url: str = "") -> Path:
    """The cloud's config; ``shared``: the fabric spans processes (a directory);
    ``db_url``: the records' database (default: an SQLite file in ``root``)."""
    fabric_dir = f"fabric_dir = {root / 'fabric'}\n" if shared else ""
    db_url = db_url or f"sqlite:///{root / 'v.sqlite'}"
    conf = root / "virtsdk.conf"
    conf.write_text(
        f"[DEFAULT]\ntransport_url = {url}\ncontrol_exchange = b{uuid.uuid4().hex[:8]}\n"
        f"state_path = {root}\ncompute_driver = fake\n"
        f"[database]\nconnection = {db_url}\n"
        "[compute]\nreport_interval = 1\nservice_down_time = 10\n"
        + "".join(f"{k} = {v}\n" for k, v in LIMITS.items())
        + f"[fake]\nfabric = {fabric}\n{fabric_dir}"
        + "".join(f"{k} = {v}\n" for k, v in FAKE.items())
        + "[oslo_messaging_notifications]\ndriver = noop\n")
    return conf


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=fh, start_new_session=True)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    import os

    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _wait_hosts(db: Database, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(db.service_get_all()) < n:
        assert time.monotonic() < deadline, "compute services did not register"
        time.sleep(0.2)


def _cold(api: API, ctx: object, u: str) -> None:
    api.migrate(ctx, u)  # type: ignore[arg-type]
    assert api.wait(ctx, u, poll=0.002).vm_state == VMState.RESIZED  # type: ignore[arg-type]
    api.confirm_resize(ctx, u)  # type: ignore[arg-type]
    assert api.wait(ctx, u, poll=0.002).vm_state == VMState.ACTIVE  # type: ignore[arg-type]


def _live(api: API, ctx: object, u: str) -> None:
    api.live_migrate(ctx, u)  # type: ignore[arg-type]
    assert api.wait(ctx, u, poll=0.002).vm_state == VMState.ACTIVE  # type: ignore[arg-type]


def _median(fn: object, api: API, ctx: object, u: str) -> float:
    samples = []
    for i in range(ROUNDS + 2):
        start = time.perf_counter()
        fn(api, ctx, u)  # type: ignore[operator]
        if i >= 2:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_processes_vs_embedded(benchmark, request: pytest.FixtureRequest, rabbit: RabbitNode,
                               database: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="vsdk-bench-mp-"))
    fabric = f"bench-mp-{uuid.uuid4().hex[:6]}"
    db_url = (request.getfixturevalue("postgres").create_database()
              if database == "postgresql" else f"sqlite:///{root / 'v.sqlite'}")
    conf_path = _config(root, rabbit.url(rabbit.new_vhost()), fabric, db_url=db_url)
    migration.db_sync(db_url)
    db = Database(db_url)
    procs = [_spawn([str(BIN / "virtsdk-conductor"), "--config-file", str(conf_path)],
                    root / "conductor.log")]
    for host in ("b1", "b2"):
        hc = root / f"{host}.conf"
        hc.write_text(f"[DEFAULT]\nhost = {host}\n")
        procs.append(_spawn([str(BIN / "virtsdk-compute"), "--config-file", str(conf_path),
                             "--config-file", str(hc)], root / f"{host}.log"))
    results: dict[str, float] = {}
    try:
        _wait_hosts(db, 2)
        from virtsdk.service.config import conf_from_files

        conf = conf_from_files([str(conf_path)], with_driver=True)
        api, ctx = API(conf, db), get_admin_context()
        api.flavor_create(ctx, "small", 256, 1, 1)
        u = api.create_instance(ctx, "mp", "small").uuid
        api.wait(ctx, u)
        results["cold_processes_ms"] = _median(_cold, api, ctx, u) * 1000
        results["live_processes_ms"] = _median(_live, api, ctx, u) * 1000
        rpc.cleanup()
    finally:
        _stop(procs)
        db.dispose()
    emb_fabric = f"bench-emb-{uuid.uuid4().hex[:6]}"
    cloud = EmbeddedCloud(("e1", "e2"), "fake",
                          overrides={"fake": {"fabric": emb_fabric, **FAKE},
                                     "compute": LIMITS}).start()
    try:
        api, ctx = cloud.api, cloud.ctx
        api.flavor_create(ctx, "small", 256, 1, 1)
        u = api.create_instance(ctx, "emb", "small").uuid
        api.wait(ctx, u)
        results["cold_embedded_ms"] = _median(_cold, api, ctx, u) * 1000
        results["live_embedded_ms"] = _median(_live, api, ctx, u) * 1000
    finally:
        cloud.stop()
        drop_fabric(emb_fabric)
    benchmark.pedantic(lambda: None, rounds=1)
    results["cold_ratio"] = results["cold_processes_ms"] / results["cold_embedded_ms"]
    results["live_ratio"] = results["live_processes_ms"] / results["live_embedded_ms"]
    report(benchmark, f"processes on rabbit+{database} vs embedded inproc+SQLite (median ms)",
           **results)


@pytest.mark.parametrize("hosts", [10, 50, 200])
def test_conductor_scale(benchmark, rabbit: RabbitNode, hosts: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="vsdk-bench-scale-"))
    fabric = f"bench-scale-{uuid.uuid4().hex[:6]}"
    # shared=False: the computes run in this process
    conf_path = _config(root, rabbit.url(rabbit.new_vhost()), fabric, shared=False)
    migration.db_sync(f"sqlite:///{root / 'v.sqlite'}")
    db = Database(f"sqlite:///{root / 'v.sqlite'}")
    conductor = _spawn([str(BIN / "virtsdk-conductor"), "--config-file", str(conf_path)],
                       root / "conductor.log")
    from virtsdk.service.config import conf_from_files

    conf = conf_from_files([str(conf_path)], with_driver=True)
    computes: list[ComputeService] = []
    try:
        for i in range(hosts):
            svc = ComputeService(conf, f"s{i:03d}", db, ConductorAPI(conf))
            svc.start()
            computes.append(svc)
        api, ctx = API(conf, db), get_admin_context()
        api.flavor_create(ctx, "small", 256, 1, 1)
        from virtsdk.scheduler import load_scheduler

        scheduler = load_scheduler(conf, db)
        flavor = api.flavor_get(ctx, "small")
        spec = RequestSpec(instance_uuid="bench", flavor=flavor)
        lat = []
        for _ in range(20):
            start = time.perf_counter()
            scheduler.select_destinations(ctx, spec, max_hosts=1)
            lat.append(time.perf_counter() - start)
        uuids = [api.create_instance(ctx, f"v{i}", "small").uuid for i in range(BATCH)]
        for u in uuids:
            api.wait(ctx, u, timeout=120)
        start = time.perf_counter()
        for u in uuids:
            api.live_migrate(ctx, u)
        for u in uuids:
            api.wait(ctx, u, poll=0.002, timeout=300)
        wall = time.perf_counter() - start
        benchmark.pedantic(lambda: None, rounds=1)
        report(benchmark, f"one conductor, {hosts} heartbeating hosts",
               scheduler_ms=statistics.median(lat) * 1000,
               live_migrations_per_s=BATCH / wall)
    finally:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:  # each waits ~1 s
            list(pool.map(lambda svc: svc.stop(), computes))
        _stop([conductor])
        rpc.cleanup()
        db.dispose()
        drop_fabric(fabric)
