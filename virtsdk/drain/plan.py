"""The drain planner: which guest goes where, when, so a host empties soonest.

Pure and deterministic: no database, no RPC.  Who calls it: the drain executor
(:mod:`virtsdk.drain.executor`) before a drain starts (``--dry-run`` shows the
result), then again each time a migration finishes, with what is still to move and
what is still in flight; the benchmark compares it with the two plans of today's
tools (:func:`naive_plan`, one guest after the other, and :func:`all_at_once_plan`).

The cost model is the pre-copy model of a live migration (docs/flows.md): a stream
of ``b`` MiB/s moving a guest of ``M`` MiB that dirties ``d`` MiB/s sends ``M``,
then what was dirtied meanwhile, and so on, ``M / (b - d)`` seconds in all; it
converges only while ``d < b``.  A cold migration copies memory and disks once
(``(M + disk) / b``).  Each migration stream reaches at most ``stream_mbps``; when
the source's link is shared (``link_mbps``), ``k`` streams at once each get
``min(stream_mbps, link_mbps / k)``.

The schedule is a list schedule: at each moment a source outbound slot is free, the
longest remaining guest that fits a destination with a free inbound slot starts
there (longest first keeps the slots busy until the end).  Capacity is consumed for
good (a guest that arrives stays), checked with :func:`virtsdk.resources.fits`, so
no destination is over-committed.  The planner tries every concurrency from 1 to
the source's outbound limit and keeps the plan that finishes first; concurrency 1
is the naive loop in another order, so the plan is never later than it on the model.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from virtsdk.objects import Flavor, HostResources
from virtsdk.resources import AllocationRatios, fits


class Mode(enum.StrEnum):
    """How a guest moves."""

    LIVE = "live"
    COLD = "cold"


class Why(enum.StrEnum):
    """Why a guest cannot move (the value is how reports say it)."""

    NOT_MIGRATABLE = "cannot be live-migrated and cold migration is not allowed"
    NO_DESTINATION = "no destination host"
    NO_CAPACITY = "no destination has the capacity"
    FAILED = "migration failed on every destination tried"
    ABORTED = "drain aborted"


@dataclass(frozen=True)
class Guest:
    """A guest on the host being drained, as the records know it."""

    uuid: str
    name: str
    flavor: Flavor
    #: MiB/s dirtied, from earlier migrations or job statistics (None: unknown)
    dirty_rate_mbps: float | None = None
    #: may move live (running, and both drivers support live migration)
    live: bool = True
    #: may move cold (the driver supports it); used only when the drain allows it
    cold: bool = True
    #: destinations this guest must not go to (e.g. where it already failed)
    avoid: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Destination:
    """A candidate host: capacity with its current claims, and its inbound limit."""

    host: str
    resources: HostResources
    #: concurrent inbound live migrations allowed (0: no limit)
    max_inbound: int = 0


@dataclass(frozen=True)
class Link:
    """What the planner assumes of the network between the source and the others."""

    #: MiB/s one migration stream reaches
    stream_mbps: float
    #: MiB/s the source's link carries in all (None: streams do not share a link)
    link_mbps: float | None = None
    #: dirty rate assumed for a guest whose rate is unknown
    default_dirty_rate_mbps: float = 0.0

    def per_stream(self, streams: int) -> float:
        if self.link_mbps is None:
            return self.stream_mbps
        return min(self.stream_mbps, self.link_mbps / max(1, streams))


@dataclass(frozen=True)
class InFlight:
    """A migration already running (when re-planning): it holds an outbound slot and
    an inbound slot of ``dest`` for ``remaining_s`` more seconds.  Its capacity is
    already claimed in the destination's resources."""

    uuid: str
    dest: str
    remaining_s: float


@dataclass(frozen=True)
class Move:
    """One planned migration."""

    uuid: str
    name: str
    dest: str
    mode: Mode
    start_s: float
    duration_s: float
    #: False when the model says plain pre-copy would not converge (dirty >= stream)
    converges: bool = True

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Stuck:
    """A guest the plan leaves where it is, and why."""

    uuid: str
    name: str
    why: Why


@dataclass(frozen=True)
class Plan:
    """Moves in start order, the guests left behind, and the estimated end."""

    moves: list[Move] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    concurrency: int = 1

    @property
    def total_s(self) -> float:
        return max((m.end_s for m in self.moves), default=0.0)

    def starting_now(self) -> list[Move]:
        """The moves to start at once (the executor starts these and re-plans)."""
        return [m for m in self.moves if m.start_s <= 1e-9]


def estimate(guest: Guest, mode: Mode, stream_mbps: float,
             default_dirty_rate_mbps: float = 0.0) -> tuple[float, bool]:
    """Estimated seconds to move ``guest`` at ``stream_mbps``, and whether pre-copy
    converges.  A non-converging live migration is estimated at three full memory
    passes (the convergence policies then throttle, pause or switch to post-copy)."""
    memory = float(guest.flavor.memory_mb)
    if mode is Mode.COLD:
        disk = 1024.0 * (guest.flavor.root_gb + guest.flavor.ephemeral_gb)
        return (memory + disk) / stream_mbps, True
    dirty = guest.dirty_rate_mbps if guest.dirty_rate_mbps is not None else \
        default_dirty_rate_mbps
    if dirty < stream_mbps:
        return memory / (stream_mbps - dirty), True
    return 3.0 * memory / stream_mbps, False


def _mode(guest: Guest, allow_cold: bool) -> Mode | None:
    if guest.live:
        return Mode.LIVE
    if allow_cold and guest.cold:
        return Mode.COLD
    return None


class _Dest:
    """A destination's state while one schedule is simulated."""

    def __init__(self, dest: Destination, busy_until: list[float]) -> None:
        self.host = dest.host
        self.res = dest.resources.copy()
        self.max_inbound = dest.max_inbound
        self.busy = sorted(busy_until)

    def free_inbound(self, now: float) -> bool:
        self.busy = [t for t in self.busy if t > now + 1e-9]
        return self.max_inbound == 0 or len(self.busy) < self.max_inbound

    def fits(self, flavor: Flavor, ratios: AllocationRatios) -> bool:
        return fits(self.res, flavor, ratios)

    def take(self, flavor: Flavor, until: float) -> None:
        self.res.memory_mb_used += flavor.memory_mb
        self.res.vcpus_used += flavor.vcpus
        self.res.local_gb_used += flavor.root_gb + flavor.ephemeral_gb
        self.busy.append(until)


def _schedule(guests: Sequence[Guest], destinations: Sequence[Destination],
              concurrency: int, link: Link, ratios: AllocationRatios, allow_cold: bool,
              in_flight: Sequence[InFlight], order: str) -> Plan:
    stream = link.per_stream(concurrency)
    dests = [_Dest(d, [f.remaining_s for f in in_flight if f.dest == d.host])
             for d in sorted(destinations, key=lambda d: d.host)]
    stuck: list[Stuck] = []
    todo: list[tuple[Guest, Mode, float, bool]] = []
    for g in guests:
        mode = _mode(g, allow_cold)
        if mode is None:
            stuck.append(Stuck(g.uuid, g.name, Why.NOT_MIGRATABLE))
            continue
        secs, conv = estimate(g, mode, stream, link.default_dirty_rate_mbps)
        todo.append((g, mode, secs, conv))
    if not dests:
        stuck += [Stuck(g.uuid, g.name, Why.NO_DESTINATION) for g, *_ in todo]
        return Plan([], stuck, concurrency)
    if order == "longest":
        todo.sort(key=lambda t: (-t[2], t[0].name, t[0].uuid))
    # a guest that fits no destination even empty of the others' plans never will
    fitting = []
    for item in todo:
        g = item[0]
        if any(d.fits(g.flavor, ratios) for d in dests if d.host not in g.avoid):
            fitting.append(item)
        else:
            stuck.append(Stuck(g.uuid, g.name, Why.NO_CAPACITY))
    slots = [f.remaining_s for f in in_flight]
    heapq.heapify(slots)
    while len(slots) < concurrency:
        heapq.heappush(slots, 0.0)
    # in-flight migrations beyond the concurrency still hold their slots
    moves: list[Move] = []
    pending = fitting
    now = 0.0
    while pending:
        while len(slots) > concurrency and slots[0] <= now + 1e-9:
            heapq.heappop(slots)
        free = sum(1 for t in slots if t <= now + 1e-9)
        started = False
        if free:
            for i, (g, mode, secs, conv) in enumerate(pending):
                cands = [d for d in dests if d.host not in g.avoid
                         and d.fits(g.flavor, ratios) and d.free_inbound(now)]
                if not cands:
                    continue
                # the emptiest destination (most free RAM after it), then by name
                best = max(cands, key=lambda d: (d.res.free_ram_mb, d.res.free_vcpus,
                                                 [-ord(c) for c in d.host]))
                best.take(g.flavor, now + secs)
                heapq.heappop(slots)
                heapq.heappush(slots, now + secs)
                moves.append(Move(g.uuid, g.name, best.host, mode, now, secs, conv))
                del pending[i]
                started = True
                break
        if started:
            continue
        # nothing can start now: wait for the next slot or inbound slot to free
        later = [t for t in slots if t > now + 1e-9]
        later += [t for d in dests for t in d.busy if t > now + 1e-9]
        if not later:
            # every slot free, yet nothing fits any more: capacity is used up
            stuck += [Stuck(g.uuid, g.name, Why.NO_CAPACITY) for g, *_ in pending]
            break
        now = min(later)
    return Plan(moves, stuck, concurrency)


def plan_drain(guests: Sequence[Guest], destinations: Sequence[Destination], *,
               max_outbound: int, link: Link,
               ratios: AllocationRatios = AllocationRatios(),
               allow_cold: bool = False,
               in_flight: Sequence[InFlight] = ()) -> Plan:
    """The plan that empties the source soonest on the model (see the module
    docstring).  ``max_outbound`` 0 means no limit (as many as there are guests)."""
    limit = max_outbound if max_outbound > 0 else max(1, len(guests) + len(in_flight))
    best: Plan | None = None
    for k in range(1, limit + 1):
        candidate = _schedule(guests, destinations, k, link, ratios, allow_cold,
                              in_flight, "longest")
        if best is None or len(candidate.moves) > len(best.moves) or (
                len(candidate.moves) == len(best.moves)
                and candidate.total_s < best.total_s - 1e-9):
            best = candidate
    assert best is not None
    return best


def naive_plan(guests: Sequence[Guest], destinations: Sequence[Destination], *,
               link: Link, ratios: AllocationRatios = AllocationRatios(),
               allow_cold: bool = False) -> Plan:
    """Today's loop (Nova's ``host-evacuate-live``): one guest after the other, in
    the order given, each at the full stream rate."""
    return _schedule(guests, destinations, 1, link, ratios, allow_cold, (), "given")


def all_at_once_plan(guests: Sequence[Guest], destinations: Sequence[Destination], *,
                     link: Link, ratios: AllocationRatios = AllocationRatios(),
                     allow_cold: bool = False) -> Plan:
    """Every guest started at once (inbound limits ignored, the link shared by all),
    in the order given."""
    unlimited = [Destination(d.host, d.resources, 0) for d in destinations]
    return _schedule(guests, unlimited, max(1, len(guests)), link, ratios, allow_cold,
                     (), "given")
