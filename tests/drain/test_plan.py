"""The drain planner on its model: limits, capacity, order, never worse than naive."""

from __future__ import annotations

import itertools

import pytest

from virtsdk.drain.plan import (
    Destination,
    Guest,
    InFlight,
    Link,
    Mode,
    Plan,
    Why,
    all_at_once_plan,
    estimate,
    naive_plan,
    plan_drain,
)
from virtsdk.objects import Flavor, HostResources
from virtsdk.resources import AllocationRatios


def flavor(mem: int, vcpus: int = 1, disk: int = 1) -> Flavor:
    return Flavor(f"m{mem}", mem, vcpus, disk)


def guest(i: int, mem: int, dirty: float | None = None, **kw: object) -> Guest:
    return Guest(f"uuid-{i}", f"g{i}", flavor(mem), dirty, **kw)  # type: ignore[arg-type]


def dest(host: str, mem: int = 65536, vcpus: int = 64, max_inbound: int = 2,
         used_mem: int = 0) -> Destination:
    return Destination(host, HostResources(host, vcpus, mem, 1000,
                                           memory_mb_used=used_mem), max_inbound)


def check_limits(plan: Plan, dests: list[Destination], max_outbound: int,
                 guests: list[Guest], in_flight: tuple[InFlight, ...] = ()) -> None:
    """At every start/end instant the outbound and inbound limits hold, and no
    destination's claims exceed its capacity."""
    intervals = [(m.start_s, m.end_s, m.dest) for m in plan.moves]
    intervals += [(0.0, f.remaining_mb / 1024, f.dest) for f in in_flight]
    for t in sorted({s for s, _, _ in intervals}):
        running = [(s, e, d) for s, e, d in intervals if s <= t + 1e-9 < e - 1e-9]
        if max_outbound:
            assert len(running) <= max_outbound
        for d in dests:
            if d.max_inbound:
                assert sum(1 for *_, h in running if h == d.host) <= d.max_inbound
    by_uuid = {g.uuid: g for g in guests}
    for d in dests:
        mem = sum(by_uuid[m.uuid].flavor.memory_mb for m in plan.moves if m.dest == d.host)
        assert d.resources.memory_mb_used + mem <= d.resources.memory_mb


def test_estimate_is_the_precopy_model() -> None:
    g = guest(1, 1024, dirty=24)
    secs, conv = estimate(g, Mode.LIVE, 1024)
    assert secs == pytest.approx(1024 / 1000) and conv
    assert estimate(guest(2, 1024, dirty=2048), Mode.LIVE, 1024)[1] is False
    cold = estimate(guest(3, 1024), Mode.COLD, 1024)[0]
    assert cold == pytest.approx((1024 + 1024) / 1024)


def test_limits_and_capacity_hold() -> None:
    guests = [guest(i, mem, dirty) for i, (mem, dirty) in enumerate(
        [(8192, 100), (4096, 0), (2048, 300), (1024, 0), (1024, 50), (512, 0),
         (8192, 0), (4096, 600)])]
    dests = [dest("a", mem=16384, max_inbound=1), dest("b", mem=12288),
             dest("c", mem=9000, used_mem=2000)]
    plan = plan_drain(guests, dests, max_outbound=3, link=Link(1024))
    check_limits(plan, dests, 3, guests)
    placed = {m.uuid for m in plan.moves} | {s.uuid for s in plan.stuck}
    assert placed == {g.uuid for g in guests}
    assert len(plan.moves) == len({m.uuid for m in plan.moves})


def test_no_capacity_and_not_migratable_are_reported() -> None:
    guests = [guest(1, 4096), guest(2, 100000), guest(3, 512, live=False),
              guest(4, 512, live=False)]
    dests = [dest("a", mem=8192)]
    plan = plan_drain(guests, dests, max_outbound=2, link=Link(1024))
    why = {s.uuid: s.why for s in plan.stuck}
    assert why == {"uuid-2": Why.NO_CAPACITY, "uuid-3": Why.NOT_MIGRATABLE,
                   "uuid-4": Why.NOT_MIGRATABLE}
    cold = plan_drain(guests, dests, max_outbound=2, link=Link(1024), allow_cold=True)
    assert {m.uuid: m.mode for m in cold.moves}["uuid-3"] is Mode.COLD
    none = plan_drain(guests, [], max_outbound=2, link=Link(1024))
    assert {s.why for s in none.stuck} >= {Why.NO_DESTINATION}


def test_capacity_runs_out_midway() -> None:
    guests = [guest(i, 4096) for i in range(4)]
    plan = plan_drain(guests, [dest("a", mem=8192)], max_outbound=2, link=Link(1024))
    assert len(plan.moves) == 2
    assert [s.why for s in plan.stuck] == [Why.NO_CAPACITY] * 2


def test_avoid_excludes_a_destination() -> None:
    g = Guest("u", "g", flavor(1024), avoid=frozenset({"a"}))
    plan = plan_drain([g], [dest("a"), dest("b")], max_outbound=1, link=Link(1024))
    assert plan.moves[0].dest == "b"


def test_in_flight_holds_its_slots() -> None:
    flights = (InFlight("x", "a", 5 * 1024.0),)  # 5 s at 1024 MiB/s
    guests = [guest(1, 1024), guest(2, 1024)]
    dests = [dest("a", max_inbound=1)]
    plan = plan_drain(guests, dests, max_outbound=1, link=Link(1024),
                      in_flight=flights)
    assert [m.start_s for m in plan.moves] == pytest.approx([5.0, 6.0])
    assert not plan.starting_now()
    check_limits(plan, dests, 1, guests, flights)


@pytest.mark.parametrize("seed", range(25))
def test_never_worse_than_naive(seed: int) -> None:
    import random

    rng = random.Random(seed)
    guests = [guest(i, rng.choice([512, 1024, 2048, 4096, 8192]),
                    rng.choice([None, 0, 50, 200, 700, 1500]))
              for i in range(rng.randint(1, 12))]
    dests = [dest(h, mem=rng.choice([16384, 32768, 65536]),
                  max_inbound=rng.choice([0, 1, 2, 3])) for h in "abc"[:rng.randint(1, 3)]]
    link = Link(1024, rng.choice([None, 1024, 2048, 4096]), default_dirty_rate_mbps=10)
    out = rng.choice([0, 1, 2, 3, 4])
    planned = plan_drain(guests, dests, max_outbound=out, link=link)
    naive = naive_plan(guests, dests, link=link)
    assert len(planned.moves) >= len(naive.moves)
    if len(planned.moves) == len(naive.moves):
        assert planned.total_s <= naive.total_s + 1e-6
    check_limits(planned, dests, out, guests)


def test_faster_than_naive_and_all_at_once_on_a_shared_link() -> None:
    sizes = itertools.cycle([(8192, 400), (4096, 50), (2048, 0), (1024, 200)])
    guests = [guest(i, *next(sizes)) for i in range(12)]
    dests = [dest(h, max_inbound=2) for h in "abc"]
    link = Link(1024, link_mbps=3072)
    planned = plan_drain(guests, dests, max_outbound=4, link=link)
    naive = naive_plan(guests, dests, link=link)
    crowd = all_at_once_plan(guests, dests, link=link)
    assert planned.total_s * 1.5 <= naive.total_s
    assert planned.total_s < crowd.total_s
    assert all(m.converges for m in planned.moves)
    assert not all(m.converges for m in crowd.moves)


def test_ratios_allow_overcommit() -> None:
    g = [guest(1, 6000)]
    d = [dest("a", mem=4096)]
    assert plan_drain(g, d, max_outbound=1, link=Link(1024)).stuck
    assert plan_drain(g, d, max_outbound=1, link=Link(1024),
                      ratios=AllocationRatios(ram=2.0)).moves


def test_a_full_link_gets_no_extra_stream() -> None:
    """Streams beyond what fills the link only share it and lose more to dirtying:
    with one stream filling the link, the plan moves the guests one at a time."""
    guests = [guest(i, mem, dirty) for i, (mem, dirty) in enumerate(
        [(4096, 300), (2048, 100), (1024, 0), (2048, 200)])]
    dests = [dest(h) for h in "ab"]
    link = Link(1024, link_mbps=1024)
    plan = plan_drain(guests, dests, max_outbound=4, link=link)
    ordered = sorted(plan.moves, key=lambda m: m.start_s)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in itertools.pairwise(ordered))
    assert plan.total_s < all_at_once_plan(guests, dests, link=link).total_s


def test_an_in_flight_migration_shares_the_link() -> None:
    flights = (InFlight("x", "a", 1024.0, dirty_rate_mbps=0.0),)
    plan = plan_drain([guest(1, 1024, 0)], [dest("a"), dest("b")], max_outbound=2,
                      link=Link(1024, link_mbps=1024), in_flight=flights)
    # together or after it, the link moves 2048 MiB in 2 s either way
    assert plan.total_s == pytest.approx(2.0)
