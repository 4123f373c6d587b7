"""The drain planner: which guest goes where, when, so a host empties soonest.

Pure and deterministic: no database, no RPC.  Who calls it: the drain executor
(:mod:`virtsdk.drain.executor`) before a drain starts (``--dry-run`` shows the
result), then again each time a migration starts or finishes, with what is still to
move and what is still in flight; the benchmark compares it with the two plans of
today's tools (:func:`naive_plan`, one guest after the other, and
:func:`all_at_once_plan`).

The cost model is the pre-copy model of a live migration (docs/flows.md) as a fluid:
a stream of ``b`` MiB/s moving a guest that dirties ``d`` MiB/s shrinks what is left
to send at ``b - d`` MiB/s, so a guest of ``M`` MiB alone takes ``M / (b - d)``
seconds.  A migration whose ``b - d`` is within :data:`NO_CONVERGENCE` of ``b`` is
taken as not converging: it progresses at ``b * NO_CONVERGENCE`` (the convergence
policies then raise the downtime, throttle, pause or switch to post-copy, or abort
it).  A cold migration copies memory and disks once, at ``b``.

Bandwidth is shared: each stream reaches at most ``stream_mbps``; when hosts' links
are limited (``link_mbps``), the streams leaving the source share its link and the
streams entering one destination share that destination's link, equally, and the
rates of every running stream change each time one starts or ends.  So more streams
at once are not always faster: once the link is full, another stream only slows the
others, and guests dirtying close to their share stop converging.

A plan is a simulation of that model over time: at each moment a stream ends (and
at the start) guests start, in the candidate's order, while the concurrency allows,
on the destination with an inbound slot and the capacity (checked with
:func:`virtsdk.resources.fits`; capacity is consumed for good, so no destination is
over-committed) that has the fewest incoming streams, then the most free RAM.
Candidates: every concurrency from 1 to the source's outbound limit, each with and
without the *throughput guard* (start a guest only if the useful rate of all running
streams together, ``sum(b_i - d_i)``, grows), longest guest first, plus the naive
loop itself; the planner keeps the candidate that finishes first on the model, so
it is never later than the naive loop there.
"""

from __future__ import annotations

import enum
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
    #: MiB/s one host's link carries in all, shared by the streams leaving the source
    #: and by those entering each destination (None: streams do not share links)
    link_mbps: float | None = None
    #: dirty rate assumed for a guest whose rate is unknown
    default_dirty_rate_mbps: float = 0.0


@dataclass(frozen=True)
class InFlight:
    """A migration already running (when re-planning): it holds an outbound slot and
    an inbound slot of ``dest`` and shares the links until its ``remaining_mb`` are
    sent.  Its capacity is already claimed in the destination's resources."""

    uuid: str
    dest: str
    #: MiB still to send (memory still to copy plus what was dirtied, disks)
    remaining_mb: float
    #: MiB/s the guest dirties (0 for a cold migration)
    dirty_rate_mbps: float = 0.0
    mode: Mode = Mode.LIVE


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


#: a live migration whose ``b - d`` is at most this fraction of its bandwidth ``b``
#: is taken as not converging (and progresses at this fraction of ``b``)
NO_CONVERGENCE = 0.1


def _progress_rate(bandwidth: float, dirty: float, mode: Mode) -> tuple[float, bool]:
    """MiB/s by which what is left to send shrinks, and whether pre-copy converges."""
    if mode is Mode.COLD:
        return bandwidth, True
    floor = bandwidth * NO_CONVERGENCE
    if bandwidth - dirty > floor:
        return bandwidth - dirty, True
    return floor, False


def _size_mb(guest: Guest, mode: Mode) -> float:
    memory = float(guest.flavor.memory_mb)
    if mode is Mode.COLD:
        return memory + 1024.0 * (guest.flavor.root_gb + guest.flavor.ephemeral_gb)
    return memory


def _dirty(guest: Guest, mode: Mode, default: float) -> float:
    if mode is Mode.COLD:
        return 0.0
    return guest.dirty_rate_mbps if guest.dirty_rate_mbps is not None else default


def estimate(guest: Guest, mode: Mode, stream_mbps: float,
             default_dirty_rate_mbps: float = 0.0) -> tuple[float, bool]:
    """Estimated seconds to move ``guest`` alone at ``stream_mbps``, and whether
    pre-copy converges (the module docstring's model)."""
    rate, converges = _progress_rate(
        stream_mbps, _dirty(guest, mode, default_dirty_rate_mbps), mode)
    return _size_mb(guest, mode) / rate, converges


def _mode(guest: Guest, allow_cold: bool) -> Mode | None:
    if guest.live:
        return Mode.LIVE
    if allow_cold and guest.cold:
        return Mode.COLD
    return None


class _Dest:
    """A destination's state while one schedule is simulated."""

    def __init__(self, dest: Destination, limit_inbound: bool) -> None:
        self.host = dest.host
        self.res = dest.resources.copy()
        self.max_inbound = dest.max_inbound if limit_inbound else 0

    def fits(self, flavor: Flavor, ratios: AllocationRatios) -> bool:
        return fits(self.res, flavor, ratios)

    def take(self, flavor: Flavor) -> None:
        self.res.memory_mb_used += flavor.memory_mb
        self.res.vcpus_used += flavor.vcpus
        self.res.local_gb_used += flavor.root_gb + flavor.ephemeral_gb


@dataclass
class _Stream:
    """One migration while a schedule is simulated."""

    uuid: str
    name: str
    dest: str
    mode: Mode
    dirty: float
    left_mb: float
    start_s: float
    planned: bool
    converges: bool = True


def _rates(streams: Sequence[_Stream], link: Link) -> list[tuple[float, bool]]:
    """Each stream's progress rate (and convergence) with the links shared."""
    inbound: dict[str, int] = {}
    for s in streams:
        inbound[s.dest] = inbound.get(s.dest, 0) + 1
    out = []
    for s in streams:
        bandwidth = link.stream_mbps
        if link.link_mbps is not None:
            bandwidth = min(bandwidth, link.link_mbps / len(streams),
                            link.link_mbps / inbound[s.dest])
        out.append(_progress_rate(bandwidth, s.dirty, s.mode))
    return out


def _useful(streams: Sequence[_Stream], link: Link) -> float:
    return sum(r for r, _ in _rates(streams, link))


_Todo = tuple[Guest, Mode, float]


def _simulate(todo: Sequence[_Todo], dests: list[_Dest], concurrency: int, link: Link,
              ratios: AllocationRatios, in_flight: Sequence[InFlight],
              guard: bool) -> tuple[list[Move], list[Guest]]:
    """Run one candidate schedule on the model: the moves, and the guests that never
    found a destination with room."""
    running = [_Stream(f.uuid, f.uuid, f.dest, f.mode, f.dirty_rate_mbps,
                       max(0.0, f.remaining_mb), 0.0, False) for f in in_flight]
    pending = list(todo)
    moves: list[Move] = []
    now = 0.0
    while pending or any(s.planned for s in running):
        i = 0
        while i < len(pending) and len(running) < concurrency:
            g, mode, dirty = pending[i]
            inbound = {d.host: 0 for d in dests}
            for s in running:
                inbound[s.dest] = inbound.get(s.dest, 0) + 1
            cands = [d for d in dests if d.host not in g.avoid and d.fits(g.flavor, ratios)
                     and (d.max_inbound == 0 or inbound[d.host] < d.max_inbound)]
            if not cands:
                i += 1
                continue
            best = min(cands, key=lambda d: (inbound[d.host], -d.res.free_ram_mb,
                                             -d.res.free_vcpus, d.host))
            stream = _Stream(g.uuid, g.name, best.host, mode, dirty, _size_mb(g, mode),
                             now, True)
            if guard and running and \
                    _useful([*running, stream], link) <= _useful(running, link) + 1e-9:
                i += 1
                continue
            best.take(g.flavor)
            running.append(stream)
            del pending[i]
        if not running:
            break  # nothing runs and nothing can start: no room left for the rest
        rates = _rates(running, link)
        for s, (_, converges) in zip(running, rates, strict=True):
            s.converges = s.converges and converges
        step = min(s.left_mb / r for s, (r, _) in zip(running, rates, strict=True))
        now += step
        still = []
        for s, (r, _) in zip(running, rates, strict=True):
            s.left_mb -= r * step
            if s.left_mb > 1e-6 * max(1.0, r):
                still.append(s)
            elif s.planned:
                moves.append(Move(s.uuid, s.name, s.dest, s.mode, s.start_s,
                                  now - s.start_s, s.converges))
        running = still
    moves.sort(key=lambda m: (m.start_s, m.end_s, m.name))
    return moves, [g for g, _, _ in pending]


def _prepare(guests: Sequence[Guest], destinations: Sequence[Destination], link: Link,
             ratios: AllocationRatios, allow_cold: bool
             ) -> tuple[list[_Todo], list[Stuck]]:
    """The guests that can move (with how), and those that cannot at all."""
    stuck: list[Stuck] = []
    todo: list[_Todo] = []
    for g in guests:
        mode = _mode(g, allow_cold)
        if mode is None:
            stuck.append(Stuck(g.uuid, g.name, Why.NOT_MIGRATABLE))
        elif not destinations:
            stuck.append(Stuck(g.uuid, g.name, Why.NO_DESTINATION))
        elif not any(fits(d.resources, g.flavor, ratios) for d in destinations
                     if d.host not in g.avoid):
            # fits no destination even before the others' claims: never will
            stuck.append(Stuck(g.uuid, g.name, Why.NO_CAPACITY))
        else:
            todo.append((g, mode, _dirty(g, mode, link.default_dirty_rate_mbps)))
    return todo, stuck


def _schedule(todo: Sequence[_Todo], stuck: Sequence[Stuck],
              destinations: Sequence[Destination], concurrency: int, link: Link,
              ratios: AllocationRatios, in_flight: Sequence[InFlight], guard: bool,
              limit_inbound: bool = True) -> Plan:
    dests = [_Dest(d, limit_inbound) for d in sorted(destinations, key=lambda d: d.host)]
    moves, left = _simulate(todo, dests, concurrency, link, ratios, in_flight, guard)
    return Plan(moves, [*stuck, *(Stuck(g.uuid, g.name, Why.NO_CAPACITY) for g in left)],
                concurrency)


def _longest_first(todo: Sequence[_Todo], link: Link) -> list[_Todo]:
    def alone(t: _Todo) -> float:
        return _size_mb(t[0], t[1]) / _progress_rate(link.stream_mbps, t[2], t[1])[0]
    return sorted(todo, key=lambda t: (-alone(t), t[0].name, t[0].uuid))


def plan_drain(guests: Sequence[Guest], destinations: Sequence[Destination], *,
               max_outbound: int, link: Link,
               ratios: AllocationRatios = AllocationRatios(),
               allow_cold: bool = False,
               in_flight: Sequence[InFlight] = ()) -> Plan:
    """The plan that empties the source soonest on the model (see the module
    docstring).  ``max_outbound`` 0 means no limit (as many as there are guests)."""
    todo, stuck = _prepare(guests, destinations, link, ratios, allow_cold)
    limit = max_outbound if max_outbound > 0 else max(1, len(guests) + len(in_flight))
    longest = _longest_first(todo, link)
    candidates = [_schedule(todo, stuck, destinations, 1, link, ratios, in_flight, False)]
    for k in range(1, limit + 1):
        for guard in (False, True):
            candidates.append(_schedule(longest, stuck, destinations, k, link, ratios,
                                        in_flight, guard))
    return min(candidates, key=lambda p: (-len(p.moves), round(p.total_s, 9),
                                          p.concurrency))


def naive_plan(guests: Sequence[Guest], destinations: Sequence[Destination], *,
               link: Link, ratios: AllocationRatios = AllocationRatios(),
               allow_cold: bool = False) -> Plan:
    """Today's loop (Nova's ``host-evacuate-live``): one guest after the other, in
    the order given."""
    todo, stuck = _prepare(guests, destinations, link, ratios, allow_cold)
    return _schedule(todo, stuck, destinations, 1, link, ratios, (), False)


def all_at_once_plan(guests: Sequence[Guest], destinations: Sequence[Destination], *,
                     link: Link, ratios: AllocationRatios = AllocationRatios(),
                     allow_cold: bool = False) -> Plan:
    """Every guest started at once (inbound limits ignored, the links shared by all),
    in the order given."""
    todo, stuck = _prepare(guests, destinations, link, ratios, allow_cold)
    return _schedule(todo, stuck, destinations, max(1, len(guests)), link, ratios, (),
                     False, limit_inbound=False)
