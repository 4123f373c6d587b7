"""Draining a host of 12 guests on the fake driver: the planned drain against
today's two ways, in one run, in simulated time.

What runs: four fake hosts on one fabric (host1 to drain, host2..host4 to receive;
shared storage, so a live migration moves memory), the fake driver's own live
migration (checks, ``pre_live_migration``, its pre-copy job under the shared monitor
and the default convergence policies, post / rollback steps: the manager's sequence
of :func:`virtsdk.testing.sequences.live_migrate`) for 12 guests of mixed size
(512..4096 MiB) and dirty rate (0..300 MiB/s).  The network is the fake's shared-link
model: one migration stream reaches 1024 MiB/s, each host's link carries 2048 MiB/s
for all the migrations leaving it (and, separately, entering it), shared equally.
Per-host limits: 3 outbound, 2 inbound live migrations.  Every guest's dirty rate is
known from an earlier migration (each guest first came to host1 by live migration,
one at a time; its job statistics measured the rate, as the drain reads it from the
migration records).

Time is the fabric's simulated clock, and only it: the clock is a
:class:`SteppedClock`, which moves only when every migration thread waits on it, to
the earliest wake-up, waking one thread at a time in a fixed order.  The decisions
(what starts where) are taken while the clock stands still, so orchestration takes
no simulated time and a run's numbers depend on nothing but the model and the
strategy: every run gives the same numbers.  (The earlier version of this benchmark
ran the whole embedded cloud on the fake's scaled clock: the real time of RPC,
database writes and polling loops, scaled by 10, was counted as simulated time and
varied from run to run with the machine's load, and the fake gave every migration
the full link however many ran at once.)

Strategies, each on a fresh fabric with the same guests:

* naive: Nova's ``host-evacuate-live`` done one by one: live-migrate a guest to the
  host the scheduler picks (most free RAM), wait, next, in boot order.
* all at once: every live migration requested at once, each to the host the
  scheduler picks (most free RAM counting the earlier requests); the hosts run them
  under their limits, in request order.
* planned: :func:`virtsdk.drain.plan.plan_drain` with what the drain executor gives
  it (measured dirty rates, capacities, limits, ``[drain]`` stream 1024 / link 2048
  MiB/s, what is in flight with its remaining MiB), re-planned each time a migration
  ends; the moves it starts now are started.

Reported per strategy: simulated seconds from the first request until host1 is
empty, the guests whose measured downtime exceeded ``[live_migration] downtime``
(the budget), and the guests not moved.  The planned drain must be at least 1.5x
faster than naive, no slower than all at once, with no guest over budget.

Run: ``.venv/bin/python -m pytest benchmarks/bench_drain.py -s``.
"""

from __future__ import annotations

import heapq
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from oslo_config import cfg
from virtsdk_fake.driver import FakeDriver
from virtsdk_fake.fabric import Fabric, drop_fabric, get_fabric

from benchmarks.measure import report
from virtsdk.context import get_admin_context
from virtsdk.drain.plan import Destination, Guest, InFlight, Link, plan_drain
from virtsdk.live_migration import opts as lm_opts
from virtsdk.objects import Flavor, ImageMeta, Instance, JobStats, NetworkInfo
from virtsdk.testing import sequences

MiB = 1024 * 1024
STREAM_MBPS = 1024
HOST_LINK_MBPS = 2048
MAX_OUTBOUND = 3
MAX_INBOUND = 2
MONITOR_INTERVAL = 0.1
RUNS = 3
HOSTS = ("host1", "host2", "host3", "host4")
DESTS = HOSTS[1:]
#: (MiB, dirty MiB/s) of the 12 guests, in the order they were booted
GUESTS = [(4096, 300), (512, 0), (2048, 100), (1024, 250),
          (4096, 0), (512, 200), (2048, 0), (1024, 50),
          (4096, 150), (512, 100), (2048, 300), (1024, 0)]


class SteppedClock:
    """Simulated time for threads started with :meth:`spawn`: it stands still while
    any of them runs and, on :meth:`advance`, jumps to the earliest wake-up and wakes
    that one sleeper (ties: the one that went to sleep first), then waits until every
    thread sleeps or has ended again.  One thread runs at a time, in an order fixed
    by the simulation alone."""

    def __init__(self) -> None:
        self._now = 0.0
        self._cond = threading.Condition()
        self._sleepers: list[tuple[float, int, list[bool]]] = []
        self._seq = 0
        self._active = 0

    def now(self) -> float:
        with self._cond:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            woken = [False]
            heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), self._seq, woken))
            self._seq += 1
            self._active -= 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: woken[0])

    def spawn(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in a thread of the simulation; returns once it sleeps or ended."""
        def body() -> None:
            try:
                fn()
            finally:
                with self._cond:
                    self._active -= 1
                    self._cond.notify_all()

        with self._cond:
            self._active += 1
        threading.Thread(target=body, daemon=True).start()
        self.settle()

    def settle(self) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._active == 0, timeout=120):
                raise RuntimeError("a simulation thread neither slept nor ended in 120 s")

    def advance(self) -> bool:
        """Wake the next sleeper (False if none sleeps)."""
        with self._cond:
            if not self._sleepers:
                return False
            deadline, _, woken = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            woken[0] = True
            self._active += 1
            self._cond.notify_all()
        self.settle()
        return True


@dataclass
class Flight:
    """One migration of the benchmark: where to, and what it reported."""

    instance: Instance
    dest: str
    samples: list[JobStats] = field(default_factory=list)
    ended_s: float | None = None
    moved: bool = False


class Bench:
    """A fresh fabric with the 12 guests on host1 (dirty rates measured)."""

    def __init__(self) -> None:
        self.conf = cfg.ConfigOpts()
        self.conf(args=[])
        lm_opts.register_opts(self.conf)
        self.conf.set_override("monitor_interval", MONITOR_INTERVAL, group="live_migration")
        self.conf.register_group(cfg.OptGroup("fake"))
        self.conf.register_opts(FakeDriver.list_opts(), group="fake")
        for key, value in {"fabric": f"bench-drain-{uuid.uuid4().hex[:8]}",
                           "shared_storage": True, "link_bandwidth_mbps": STREAM_MBPS,
                           "host_link_mbps": HOST_LINK_MBPS, "host_vcpus": 64,
                           "host_memory_mb": 65536}.items():
            self.conf.set_override(key, value, group="fake")
        self.clock = SteppedClock()
        self.fabric: Fabric = get_fabric(self.conf.fake.fabric)
        self.fabric.use_clock(self.clock)
        self.drivers = {h: FakeDriver(self.conf, h) for h in HOSTS}
        self.ctx = get_admin_context()
        self.guests: list[Instance] = []
        self.measured: dict[str, float] = {}
        self.flights: dict[str, Flight] = {}
        self.budget_ms = int(self.conf.live_migration.downtime)
        self._arrive()

    def close(self) -> None:
        drop_fabric(self.fabric.name)

    def _arrive(self) -> None:
        """Boot the guests on host4 and live-migrate each to host1, one at a time:
        the migration's job statistics measure its dirty rate."""
        for i, (mem, dirty) in enumerate(GUESTS):
            inst = Instance(name=f"g{i:02d}", flavor=Flavor(f"m{mem}", mem, 1, 1),
                            host="host4")
            self.drivers["host4"].spawn(self.ctx, inst, ImageMeta(id="bench"),
                                        NetworkInfo())
            self.fabric.set_migration_params(inst.uuid, dirty_rate_mbps=dirty)
            self.guests.append(inst)
            flight = self.start(inst, "host1")
            while flight.ended_s is None:
                assert self.clock.advance()
            assert flight.moved, flight.samples[-1]
            self.measured[inst.uuid] = max(s.memory_dirty_rate for s in flight.samples) / MiB
        self.flights.clear()

    def start(self, inst: Instance, dest: str) -> Flight:
        """Start one live migration in a thread of the simulated clock."""
        flight = self.flights[inst.uuid] = Flight(inst, dest)
        src, dst = self.drivers[str(inst.host)], self.drivers[dest]

        def run() -> None:
            out = sequences.live_migrate(src, dst, self.ctx, inst,
                                         on_sample=flight.samples.append)
            flight.moved = out.calls == ["post"]
            if flight.moved:
                inst.host = dest
            flight.ended_s = self.clock.now()

        self.clock.spawn(run)
        return flight

    def free_ram(self, host: str, claimed: dict[str, int]) -> int:
        res = self.drivers[host].get_available_resource()
        return int(res.memory_mb - res.memory_mb_used) - claimed.get(host, 0)

    def scheduler_pick(self, inst: Instance, claimed: dict[str, int]) -> str:
        """The scheduler's choice: the destination with the most free RAM."""
        host = max(DESTS, key=lambda h: (self.free_ram(h, claimed), h))
        claimed[host] = claimed.get(host, 0) + inst.flavor.memory_mb
        return host

    def running(self) -> list[Flight]:
        return [f for f in self.flights.values() if f.ended_s is None]

    def run(self, dispatch: Callable[[], None]) -> dict[str, Any]:
        """Dispatch, let time run until a migration ends, dispatch again... until
        nothing runs and nothing more starts."""
        start = self.clock.now()
        while True:
            before = len(self.flights)
            dispatch()
            running = self.running()
            if not running:
                if len(self.flights) == before:
                    break
                continue
            ended = {id(f) for f in running}
            while all(f.ended_s is None for f in self.flights.values() if id(f) in ended):
                assert self.clock.advance(), "migrations neither end nor sleep"
        left = [g for g in self.guests if g.host == "host1"]
        downtimes = [f.samples[-1].downtime_ms for f in self.flights.values() if f.moved]
        return {"sim_s": self.clock.now() - start, "not_moved": len(left),
                "over_budget": sum(d > self.budget_ms for d in downtimes),
                "max_downtime_ms": max(downtimes, default=0), "budget_ms": self.budget_ms}


def naive(b: Bench) -> dict[str, Any]:
    todo = list(b.guests)

    def dispatch() -> None:
        if todo and not b.running():
            inst = todo.pop(0)
            b.start(inst, b.scheduler_pick(inst, {}))

    return b.run(dispatch)


def all_at_once(b: Bench) -> dict[str, Any]:
    claimed: dict[str, int] = {}
    queue = [(inst, b.scheduler_pick(inst, claimed)) for inst in b.guests]

    def dispatch() -> None:
        for inst, dest in list(queue):
            running = b.running()
            inbound = sum(1 for f in running if f.dest == dest)
            if len(running) < MAX_OUTBOUND and inbound < MAX_INBOUND:
                queue.remove((inst, dest))
                b.start(inst, dest)

    return b.run(dispatch)


def planned(b: Bench) -> dict[str, Any]:
    link = Link(STREAM_MBPS, HOST_LINK_MBPS)

    def dispatch() -> None:
        running = b.running()
        busy = {f.instance.uuid for f in running}
        guests = [Guest(g.uuid, g.name, g.flavor, b.measured[g.uuid]) for g in b.guests
                  if g.host == "host1" and g.uuid not in busy
                  and g.uuid not in {u for u, f in b.flights.items()
                                     if f.ended_s is not None}]
        in_flight = [InFlight(f.instance.uuid, f.dest,
                              (f.samples[-1].memory_remaining if f.samples
                               else f.instance.flavor.memory_mb * MiB) / MiB,
                              b.measured[f.instance.uuid]) for f in running]
        dests = [Destination(h, b.drivers[h].get_available_resource(), MAX_INBOUND)
                 for h in DESTS]
        plan = plan_drain(guests, dests, max_outbound=MAX_OUTBOUND, link=link,
                          in_flight=in_flight)
        by_uuid = {g.uuid: g for g in b.guests}
        for move in plan.starting_now():
            b.start(by_uuid[move.uuid], move.dest)

    return b.run(dispatch)


STRATEGIES: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "naive": naive, "all at once": all_at_once, "planned": planned}


def measure(strategy: Callable[[Bench], dict[str, Any]]) -> dict[str, Any]:
    b = Bench()
    try:
        return strategy(b)
    finally:
        b.close()


@pytest.fixture(scope="module")
def runs() -> Iterator[list[dict[str, dict[str, Any]]]]:
    yield [{name: measure(fn) for name, fn in STRATEGIES.items()} for _ in range(RUNS)]


@pytest.mark.benchmark(group="drain")
def test_drain_planned_vs_naive_vs_all_at_once(benchmark: Any,
                                               runs: list[dict[str, dict[str, Any]]]
                                               ) -> None:
    results: dict[str, dict[str, Any]] = {}
    benchmark.pedantic(lambda: results.setdefault("planned", measure(planned)), rounds=1)
    print()
    for i, run in enumerate(runs, 1):
        for name, r in run.items():
            print(f"run {i}  {name:12s} {r['sim_s']:7.2f} simulated s, "
                  f"{r['over_budget']} over the {r['budget_ms']} ms downtime budget "
                  f"(max {r['max_downtime_ms']} ms), {r['not_moved']} not moved")
        print(f"run {i}  planned is {run['naive']['sim_s'] / run['planned']['sim_s']:.2f}x "
              f"naive, {run['all at once']['sim_s'] / run['planned']['sim_s']:.2f}x "
              "all at once")
    first = runs[0]
    report(benchmark, "drain of 12 guests (simulated seconds)",
           naive_s=first["naive"]["sim_s"], all_at_once_s=first["all at once"]["sim_s"],
           planned_s=first["planned"]["sim_s"],
           speedup_vs_naive=first["naive"]["sim_s"] / first["planned"]["sim_s"],
           speedup_vs_all_at_once=first["all at once"]["sim_s"] / first["planned"]["sim_s"])
    for run in [*runs, {"planned": results["planned"]}]:
        assert run["planned"] == runs[0]["planned"]  # simulated time: the same every run
    for run in runs:
        assert run["planned"]["over_budget"] == 0 and run["planned"]["not_moved"] == 0
        assert run["naive"]["sim_s"] >= 1.5 * run["planned"]["sim_s"]
        assert run["all at once"]["sim_s"] >= run["planned"]["sim_s"]

