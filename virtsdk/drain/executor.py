"""The drain executor: empty a host through the existing migration flows.

Who calls it: :meth:`virtsdk.api.API.drain_host` (which runs :meth:`Drainer.run` in
a thread of its process), ``--dry-run`` through :meth:`Drainer.plan`, and
:meth:`virtsdk.api.API.drain_resume` after the process restarted.

A drain disables the host for scheduling (its service record's ``disabled`` flag,
:func:`set_host_disabled`), then repeatedly asks the planner what to start now given
what is still on the host and what is in flight, and starts it through the
:class:`Migrator` (the API: ``live_migrate`` / ``migrate`` + ``confirm_resize``).
A guest whose migration fails is tried once more on another destination
(``[drain] max_attempts``), then reported and left running where it is.  Cold
migration is used only for guests that cannot move live and only when the drain
allows it.  The drain's record (:class:`~virtsdk.db.records.Drain`) says at every
moment where each guest is; the loop works only from that record and the
instances' and migrations' records, so a new loop picks a drain up where the last
one stopped.  A drain ends ``complete`` (the host is empty) or ``incomplete``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Protocol

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.db.records import Drain, DrainGuest, Service
from virtsdk.drain.plan import (
    Destination,
    Guest,
    InFlight,
    Link,
    Mode,
    Plan,
    Why,
    plan_drain,
)
from virtsdk.exceptions import (
    Conflict,
    DrainRefused,
    InstanceNotFound,
    VirtSDKError,
)
from virtsdk.objects import Instance, Migration
from virtsdk.resources import AllocationRatios, with_usage
from virtsdk.services import COMPUTE
from virtsdk.states import MigrationStatus, MigrationType, VMState

LOG = logging.getLogger(__name__)

Status = MigrationStatus
#: migration statuses after which a live migration is over
_LIVE_OVER = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.ERROR)
MiB = 1024 * 1024

RUNNING = "running"
ABORTING = "aborting"
COMPLETE = "complete"
INCOMPLETE = "incomplete"


class Migrator(Protocol):
    """The flows a drain uses (:class:`virtsdk.api.API` is one)."""

    def live_migrate(self, ctx: RequestContext, instance_uuid: str,
                     host: str | None = None, block_migration: bool | str = "auto",
                     disk_over_commit: bool = False) -> Migration: ...

    def migrate(self, ctx: RequestContext, instance_uuid: str,
                host: str | None = None) -> None: ...

    def confirm_resize(self, ctx: RequestContext, instance_uuid: str) -> None: ...

    def live_migration_abort(self, ctx: RequestContext, instance_uuid: str,
                             migration_id: int) -> None: ...


def set_host_disabled(db: Database, host: str, disabled: bool) -> None:
    """The one place a drain (and enable_host) flips a host's scheduling flag; the
    reason shows in ``virtsdk-manage service list``."""
    db.service_update(host, COMPUTE, {"disabled": disabled,
                                      "disabled_reason": "drain" if disabled else None})


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def plan_to_primitive(plan: Plan) -> dict[str, Any]:
    """A plan as the drain record stores it (and the CLI prints it)."""
    return {
        "estimated_s": plan.total_s,
        "concurrency": plan.concurrency,
        "moves": [{"uuid": m.uuid, "name": m.name, "dest": m.dest, "mode": str(m.mode),
                   "start_s": m.start_s, "duration_s": m.duration_s,
                   "converges": m.converges} for m in plan.moves],
        "stuck": [{"uuid": s.uuid, "name": s.name, "why": str(s.why)}
                  for s in plan.stuck],
    }


class Drainer:
    """Plans and runs drains (see the module docstring).  Explicit dependencies: the
    configuration, the database and the :class:`Migrator`."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database, migrator: Migrator) -> None:
        self.conf = conf
        self.db = db
        self.migrator = migrator
        self._stop = threading.Event()

    # -- what the records know -------------------------------------------------------------

    def _source(self, host: str) -> Service:
        return self.db.compute_service(host)

    def link(self) -> Link:
        group = self.conf.drain
        return Link(group.stream_bandwidth_mbps, group.link_bandwidth_mbps or None,
                    group.default_dirty_rate_mbps)

    def destinations(self, source: str) -> list[Destination]:
        """Every other compute host that is up, enabled and reported capacity, with
        what is claimed on it now and its inbound limit."""
        now = _utcnow()
        out = []
        for svc in self.db.service_get_all(COMPUTE):
            if svc.host == source or svc.resources is None or svc.disabled or \
                    not svc.is_up(self.conf.compute.service_down_time, now):
                continue
            res = with_usage(svc.resources, self.db.host_usage(svc.host))
            out.append(Destination(svc.host, res, int(svc.limits.get("max_inbound", 0))))
        return out

    def _dirty_rate(self, instance_uuid: str) -> float | None:
        """MiB/s the instance dirtied as its latest measured live migration saw it:
        the highest rate its job statistics recorded (the last sample and each
        decision of the timeline; a throttled guest shows less than its own rate).
        None when no migration measured one."""
        for mig in reversed(self.db.migration_get_all(
                instance_uuid=instance_uuid, migration_type=MigrationType.LIVE)):
            details = self.db.migration_details(int(mig.id or 0))
            rates = [details.get("memory_dirty_rate")]
            rates += [e.get("dirty_rate") for e in details.get("timeline") or []
                      if isinstance(e, dict)]
            seen = [float(r) for r in rates if isinstance(r, int | float) and r > 0]
            if seen:
                return max(seen) / MiB
        return None

    def guest(self, instance: Instance, source: Service, live: bool,
              tried: list[str]) -> Guest:
        caps = source.capabilities
        can_live = bool(live and caps.get("supports_live_migration", False)
                        and instance.vm_state == VMState.ACTIVE
                        and instance.task_state is None)
        can_cold = bool(caps.get("supports_cold_migration", False)
                        and instance.vm_state in (VMState.ACTIVE, VMState.STOPPED)
                        and instance.task_state is None)
        return Guest(instance.uuid, instance.name, instance.flavor,
                     self._dirty_rate(instance.uuid), can_live, can_cold, frozenset(tried))

    def plan(self, host: str, *, live: bool = True, allow_cold: bool = False,
             in_flight: tuple[InFlight, ...] = (),
             guests: list[Guest] | None = None) -> Plan:
        """The plan for what is on ``host`` now (what ``--dry-run`` shows)."""
        source = self._source(host)
        if guests is None:
            guests = [self.guest(i, source, live, [])
                      for i in self.db.instance_get_all(host)]
        return plan_drain(guests, self.destinations(host),
                          max_outbound=int(source.limits.get("max_outbound", 0)),
                          link=self.link(), ratios=AllocationRatios.from_conf(self.conf),
                          allow_cold=allow_cold or not live, in_flight=in_flight)

    # -- starting, aborting ----------------------------------------------------------------

    def start(self, host: str, *, live: bool = True, allow_cold: bool = False) -> Drain:
        """Check the drain can do something, disable the host and make its record;
        :meth:`run` then does the work.  DrainRefused when there is no destination
        at all or none can take any guest; Conflict when a drain of ``host`` runs."""
        was_disabled = self._source(host).disabled
        busy = self.db.drain_get_all(host, active_only=True)
        if busy:
            raise Conflict(f"host {host!r} is already being drained (drain {busy[-1].id})")
        # disabled first, so that no guest lands on it after its guests were listed
        set_host_disabled(self.db, host, True)
        try:
            plan = self.plan(host, live=live, allow_cold=allow_cold)
            instances = self.db.instance_get_all(host)
            if instances and not plan.moves:
                reasons = sorted({str(s.why) for s in plan.stuck})
                if not self.destinations(host):
                    raise DrainRefused(f"cannot drain host {host!r}: no other compute host "
                                       "is up and enabled")
                raise DrainRefused(f"cannot drain host {host!r}: none of its "
                                   f"{len(instances)} guest(s) can move "
                                   f"({'; '.join(reasons)})")
            return self.db.drain_create(host, live, allow_cold, plan_to_primitive(plan),
                                        [(i.uuid, i.name) for i in instances])
        except BaseException:
            set_host_disabled(self.db, host, was_disabled)
            raise

    def abort(self, drain_id: int) -> Drain:
        """Ask the drain to stop: no new migration starts and those in flight are
        aborted (by its loop, which then ends the drain ``incomplete``)."""
        if not self.db.drain_update(drain_id, {"status": ABORTING,
                                               "message": "abort requested"},
                                    expected_status=(RUNNING,)):
            drain = self.db.drain_get(drain_id)
            if drain.status != ABORTING:
                raise Conflict(f"drain {drain_id} is {drain.status}: nothing to abort")
        return self.db.drain_get(drain_id)

    def stop(self) -> None:
        """Stop this process's loops (the drains stay as recorded)."""
        self._stop.set()

    # -- the loop --------------------------------------------------------------------------

    def run(self, ctx: RequestContext, drain_id: int) -> Drain:
        """Work on the drain until it ends (or :meth:`stop`); returns its record."""
        aborts_sent: set[int] = set()
        planned: tuple[object, ...] | None = None
        planned_at = 0.0
        while not self._stop.is_set():
            drain = self.db.drain_get(drain_id)
            if drain.finished:
                return drain
            for g in drain.guests:
                if g.status == "migrating":
                    self._follow(ctx, drain, g)
            drain = self.db.drain_get(drain_id)
            if drain.status == ABORTING:
                self._abort_in_flight(ctx, drain, aborts_sent)
            else:
                # re-plan when a migration started or ended, else once a second (other
                # hosts' migrations free their slots too)
                state = tuple((g.instance_uuid, g.status, g.attempts) for g in drain.guests)
                now = time.monotonic()
                if state != planned or now - planned_at > 1.0:
                    self._start_moves(ctx, drain)
                    planned, planned_at = state, now
            drain = self.db.drain_get(drain_id)
            if not any(g.status in ("pending", "migrating") for g in drain.guests):
                return self._finish(drain)
            self._stop.wait(self.conf.drain.poll_interval)
        return self.db.drain_get(drain_id)

    def _finish(self, drain: Drain) -> Drain:
        left = self.db.instance_get_all(drain.host)
        ok = all(g.status == "done" for g in drain.guests) and not left
        status = COMPLETE if ok else INCOMPLETE
        message = drain.message if drain.status == ABORTING else ""
        if not ok and not message:
            message = f"{len(left)} guest(s) left on {drain.host}"
        self.db.drain_update(drain.id, {"status": status, "message": message})
        return self.db.drain_get(drain.id)

    def _abort_in_flight(self, ctx: RequestContext, drain: Drain,
                         sent: set[int]) -> None:
        for g in drain.guests:
            if g.status == "pending":
                self.db.drain_guest_update(drain.id, g.instance_uuid, {
                    "status": "aborted", "error": str(Why.ABORTED)})
            elif g.status == "migrating" and g.mode == Mode.LIVE and \
                    g.migration_id is not None and g.migration_id not in sent:
                sent.add(g.migration_id)
                try:
                    self.migrator.live_migration_abort(ctx, g.instance_uuid,
                                                       g.migration_id)
                except VirtSDKError as exc:  # e.g. it just finished: follow it
                    LOG.info("drain %s: abort of migration %s: %s", drain.id,
                             g.migration_id, exc)

    def _in_flight(self, drain: Drain) -> tuple[InFlight, ...]:
        """The drain's migrations still running, with what they still have to send:
        a live migration's latest progress sample (memory and disk remaining), else
        the whole guest."""
        out = []
        for g in drain.guests:
            if g.status != "migrating" or not g.dest_host:
                continue
            try:
                inst = self.db.instance_get(g.instance_uuid)
            except InstanceNotFound:
                continue
            mode = Mode(g.mode) if g.mode else Mode.LIVE
            left = float(inst.flavor.memory_mb)
            if mode is Mode.COLD:
                left += 1024.0 * (inst.flavor.root_gb + inst.flavor.ephemeral_gb)
            dirty = 0.0
            if mode is Mode.LIVE:
                dirty = self._dirty_rate(g.instance_uuid) or \
                    self.conf.drain.default_dirty_rate_mbps
                if g.migration_id is not None:
                    mig = self.db.migration_get(g.migration_id)
                    if mig.memory_total or mig.disk_total:
                        left = (mig.memory_remaining + mig.disk_remaining) / MiB
            # still running: it holds its slots now, however little it has left
            out.append(InFlight(g.instance_uuid, g.dest_host, max(1.0, left), dirty, mode))
        return tuple(out)

    def _start_moves(self, ctx: RequestContext, drain: Drain) -> None:
        source = self._source(drain.host)
        pending = {g.instance_uuid: g for g in drain.guests if g.status == "pending"}
        if not pending:
            return
        guests = []
        for uuid, g in pending.items():
            try:
                inst = self.db.instance_get(uuid)
            except InstanceNotFound:
                self.db.drain_guest_update(drain.id, uuid, {
                    "status": "failed", "error": "instance was deleted during the drain"})
                continue
            if inst.host != drain.host:  # moved by someone else meanwhile
                self.db.drain_guest_update(drain.id, uuid, {
                    "status": "done", "dest_host": inst.host, "finished_at": _utcnow()})
                continue
            guests.append(self.guest(inst, source, drain.live, g.tried_hosts))
        in_flight = self._in_flight(drain)
        plan = self.plan(drain.host, live=drain.live, allow_cold=drain.allow_cold,
                         in_flight=in_flight, guests=guests)
        if not in_flight:
            # nothing running and the plan cannot place them: they stay
            for s in plan.stuck:
                self.db.drain_guest_update(drain.id, s.uuid, {
                    "status": "stuck", "error": str(s.why)})
        for move in plan.starting_now():
            self._launch(ctx, drain, pending[move.uuid], move.dest, move.mode,
                         move.duration_s)

    def _launch(self, ctx: RequestContext, drain: Drain, g: DrainGuest, dest: str,
                mode: Mode, estimated_s: float) -> None:
        values: dict[str, Any] = {"status": "migrating", "mode": str(mode),
                                  "dest_host": dest, "attempts": g.attempts + 1,
                                  "estimated_s": estimated_s, "started_at": _utcnow(),
                                  "error": ""}
        self.db.drain_guest_update(drain.id, g.instance_uuid, values)
        try:
            if mode is Mode.LIVE:
                mig = self.migrator.live_migrate(ctx, g.instance_uuid, host=dest)
                self.db.drain_guest_update(drain.id, g.instance_uuid,
                                           {"migration_id": mig.id})
            else:
                self.migrator.migrate(ctx, g.instance_uuid, host=dest)
        except VirtSDKError as exc:
            LOG.info("drain %s: %s to %s refused: %s", drain.id, g.instance_uuid, dest,
                     exc)
            self._failed(drain, g.instance_uuid, g.attempts + 1, dest,
                         f"{type(exc).__name__}: {exc}")

    def _failed(self, drain: Drain, uuid: str, attempts: int, dest: str | None,
                error: str) -> None:
        """One attempt failed (the guest still runs on the source): retry it
        elsewhere, or report it."""
        again = attempts < self.conf.drain.max_attempts and drain.status == RUNNING
        status = "pending" if again else ("aborted" if drain.status == ABORTING
                                          else "failed")
        self.db.drain_guest_update(drain.id, uuid, {
            "status": status, "error": error, "tried_host": dest,
            "finished_at": None if again else _utcnow()})

    def _follow(self, ctx: RequestContext, drain: Drain, g: DrainGuest) -> None:
        """Look at one migration in flight and record its outcome once it is over."""
        try:
            inst = self.db.instance_get(g.instance_uuid)
        except InstanceNotFound:
            self.db.drain_guest_update(drain.id, g.instance_uuid, {
                "status": "failed", "error": "instance was deleted during the drain",
                "finished_at": _utcnow()})
            return
        if g.mode == Mode.COLD:
            self._follow_cold(ctx, drain, g, inst)
            return
        if g.migration_id is None:
            if inst.task_state is None and inst.host == drain.host:
                # the request never got a migration record (a crash in between)
                self._failed(drain, g.instance_uuid, g.attempts, g.dest_host,
                             "migration was not started")
            return
        mig = self.db.migration_get(g.migration_id)
        if mig.status not in _LIVE_OVER or inst.task_state is not None:
            return
        if inst.host == drain.host:
            self._failed(drain, g.instance_uuid, g.attempts, g.dest_host,
                         mig.error or f"migration {mig.id} ended {mig.status}")
            return
        # the guest runs elsewhere: moved (a migration whose source crashed after the
        # switch-over ends 'error', yet recovery followed the guest to its new host)
        details = self.db.migration_details(g.migration_id)
        downtime = details.get("downtime_ms")
        note = "" if mig.status == Status.COMPLETED else \
            f"migration {mig.id} ended {mig.status}: {mig.error}"
        self.db.drain_guest_update(drain.id, g.instance_uuid, {
            "status": "done", "finished_at": _utcnow(), "dest_host": inst.host,
            "error": note,
            "downtime_ms": int(downtime) if downtime is not None else None})

    def _follow_cold(self, ctx: RequestContext, drain: Drain, g: DrainGuest,
                     inst: Instance) -> None:
        if inst.task_state is not None:
            return
        if inst.vm_state == VMState.RESIZED:
            try:
                self.migrator.confirm_resize(ctx, g.instance_uuid)
            except VirtSDKError as exc:
                LOG.info("drain %s: confirming %s: %s", drain.id, g.instance_uuid, exc)
            return
        migs = [m for m in self.db.migration_get_all(instance_uuid=g.instance_uuid)
                if m.id is not None and m.id not in g.migration_ids]
        if inst.host != drain.host:
            self.db.drain_guest_update(drain.id, g.instance_uuid, {
                "status": "done", "finished_at": _utcnow(), "dest_host": inst.host,
                "migration_id": migs[-1].id if migs else None})
            return
        if self.db.action_latest_open(g.instance_uuid):
            return  # the request is still on its way
        error = migs[-1].error if migs and migs[-1].error else \
            "cold migration did not move the instance"
        if migs:
            self.db.drain_guest_update(drain.id, g.instance_uuid,
                                       {"migration_id": migs[-1].id})
        self._failed(drain, g.instance_uuid, g.attempts, g.dest_host, error)
