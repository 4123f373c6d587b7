"""The orchestration database: one :class:`Database` object per embedded cloud.

Who calls it: the API, the conductor, the scheduler and every compute manager, from
any thread.  Each public method is one short transaction taken under a process-wide
lock, so a method either happens completely or not at all and SQLite (opened with
``check_same_thread=False``) is never used by two threads at once.

Instance saves that start or end a task are *guarded*: ``instance_update(...,
expected_task_state=X)`` runs ``UPDATE ... WHERE task_state = X`` and raises
:class:`~virtsdk.exceptions.UnexpectedTaskState` when no row matched, so two requests
racing on one instance can never both proceed (optimistic concurrency).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from oslo_config import cfg
from sqlalchemy import CursorResult, create_engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from virtsdk import __version__
from virtsdk.context import RequestContext
from virtsdk.db import claims, convert
from virtsdk.db.claims import COLD_IN_PROGRESS, IN_PROGRESS, LIVE_ACTIVE, LIVE_IN_PROGRESS
from virtsdk.db.models import (
    ActionEventRow,
    ActionRow,
    DrainGuestRow,
    DrainRow,
    FlavorRow,
    InstanceRow,
    MigrationRow,
    ServiceRow,
    utcnow,
)
from virtsdk.db.records import Drain, HostUsage, InstanceAction, Service
from virtsdk.exceptions import (
    Conflict,
    DrainNotFound,
    FlavorNotFound,
    HostNotFound,
    InstanceInvalidState,
    InstanceNotFound,
    MigrationNotFound,
    UnexpectedTaskState,
)
from virtsdk.objects import Flavor, Instance, Migration
from virtsdk.services import COMPUTE
from virtsdk.states import MigrationStatus, MigrationType, SlotClaim, VMState
from virtsdk.validation import validate_hostname

#: statuses of a drain still in progress
_DRAIN_ACTIVE = ("running", "aborting")

#: Sentinel: do not check the task state.
ANY: Any = object()

__all__ = ["ANY", "COLD_IN_PROGRESS", "IN_PROGRESS", "LIVE_ACTIVE", "LIVE_IN_PROGRESS",
           "Database", "connection_url"]


def connection_url(conf: cfg.ConfigOpts) -> str:
    """``[database] connection`` or the default SQLite file under ``state_path``."""
    if conf.database.connection:
        url: str = conf.database.connection
        return url
    os.makedirs(conf.state_path, exist_ok=True)
    return f"sqlite:///{os.path.join(conf.state_path, 'virtsdk.sqlite')}"


def _states(value: Any) -> list[str | None]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return [None if v is None else str(v) for v in value]
    return [None if value is None else str(value)]


def _state_clause(column: Any, allowed: list[str | None]) -> Any:
    named = [v for v in allowed if v is not None]
    clauses = []
    if named:
        clauses.append(column.in_(named))
    if None in allowed:
        clauses.append(column.is_(None))
    if len(clauses) == 1:
        return clauses[0]
    from sqlalchemy import or_

    return or_(*clauses)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """WAL journal with synchronous=NORMAL: readers never block the writer and a
    commit costs no fsync of the main file; a crash loses at most the last commits,
    never consistency."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


LOG = logging.getLogger(__name__)

#: seconds a new connection to a database server this engine reached before keeps
#: being retried (every half second) while the server refuses it: a PostgreSQL
#: restart (shutting down, starting up) stalls the callers instead of failing their
#: flows.  A server never reached (a wrong URL) fails at once.
CONNECT_RETRY_S = 60.0


def _retry_connects(engine: Any, window: float = CONNECT_RETRY_S) -> None:
    """Make ``engine`` wait out a restarting server on every new connection.  Only
    the connect is retried (no statement of a transaction ran on it yet), with
    SQLAlchemy's ``do_connect`` hook; oslo.db's retry covers the first connect only."""
    reached = threading.Event()

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        deadline = time.monotonic() + window
        while True:
            try:
                conn = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if not reached.is_set() or time.monotonic() >= deadline:
                    raise
                LOG.warning("database unreachable, retrying: %s", exc)
                time.sleep(0.5)
                continue
            reached.set()
            return conn


class Database:
    """All persistence of the orchestration layer (see the module docstring).

    It expects the schema to be there: :func:`virtsdk.db.migration.db_sync`
    (``virtsdk-manage db sync``; the embedded cloud runs it on start) makes it."""

    def __init__(self, url: str, echo: bool = False) -> None:
        kwargs: dict[str, Any] = {"echo": echo}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:  # a database server restarts: test pooled connections before use
            kwargs["pool_pre_ping"] = True
        self.url = url
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite") and ":memory:" not in url and url != "sqlite://":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if not url.startswith("sqlite"):
            _retry_connects(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.RLock()

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Database:
        return cls(connection_url(conf), echo=conf.database.echo)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with self._lock, self._sessions() as session, session.begin():
            yield session

    # -- flavors --------------------------------------------------------------------------

    def flavor_create(self, flavor: Flavor) -> Flavor:
        """Store a new flavor; Conflict if the name is taken."""
        with self._session() as s:
            if s.scalar(select(FlavorRow).where(FlavorRow.name == flavor.name)):
                raise Conflict(f"flavor {flavor.name!r} already exists")
            s.add(FlavorRow(name=flavor.name, data=flavor.to_primitive()))
        return flavor

    def flavor_get(self, name: str) -> Flavor:
        with self._session() as s:
            row = s.scalar(select(FlavorRow).where(FlavorRow.name == name))
            if row is None:
                raise FlavorNotFound(f"flavor {name!r} not found")
            return Flavor.from_primitive(row.data)

    def flavor_list(self) -> list[Flavor]:
        with self._session() as s:
            rows = s.scalars(select(FlavorRow).order_by(FlavorRow.id)).all()
            return [Flavor.from_primitive(r.data) for r in rows]

    # -- instances ------------------------------------------------------------------------

    def instance_create(self, instance: Instance) -> Instance:
        with self._session() as s:
            s.add(InstanceRow(**convert.instance_columns(instance)))
        return instance

    def instance_get(self, uuid: str, read_deleted: bool = False) -> Instance:
        with self._session() as s:
            row = self._instance_row(s, uuid, read_deleted)
            return convert.row_to_instance(row)

    @staticmethod
    def _instance_row(s: Session, uuid: str, read_deleted: bool = False) -> InstanceRow:
        q = select(InstanceRow).where(InstanceRow.uuid == uuid)
        if not read_deleted:
            q = q.where(InstanceRow.deleted.is_(False))
        row = s.scalar(q)
        if row is None:
            raise InstanceNotFound(uuid)
        return row

    def instance_get_all(self, host: str | None = None) -> list[Instance]:
        with self._session() as s:
            q = select(InstanceRow).where(InstanceRow.deleted.is_(False))
            if host is not None:
                q = q.where(InstanceRow.host == host)
            return [convert.row_to_instance(r) for r in s.scalars(q.order_by(InstanceRow.id))]

    def instance_update(
        self,
        uuid: str,
        values: dict[str, Any],
        expected_task_state: Any = ANY,
        expected_vm_state: Any = ANY,
    ) -> Instance:
        """Change fields of an instance, atomically, if its states are as expected.

        ``expected_task_state`` / ``expected_vm_state``: a state, ``None`` or a tuple of
        them.  Raises UnexpectedTaskState (a Conflict) or InstanceInvalidState naming
        the actual state when the row no longer matches; InstanceNotFound if deleted.
        Returns the instance as saved.
        """
        cols = convert.instance_values(values)
        with self._session() as s:
            moved_from: str | None = None
            if "host" in values:
                moved_from = s.scalar(select(InstanceRow.host).where(
                    InstanceRow.uuid == uuid, InstanceRow.deleted.is_(False)))
            stmt = update(InstanceRow).where(
                InstanceRow.uuid == uuid, InstanceRow.deleted.is_(False))
            if expected_task_state is not ANY:
                stmt = stmt.where(
                    _state_clause(InstanceRow.task_state, _states(expected_task_state)))
            if expected_vm_state is not ANY:
                stmt = stmt.where(
                    _state_clause(InstanceRow.vm_state, _states(expected_vm_state)))
            cols["updated_at"] = utcnow()
            # an UPDATE returns a CursorResult, the one kind of Result with a rowcount
            result = cast(CursorResult[Any], s.execute(stmt.values(**cols).execution_options(
                synchronize_session=False)))
            row = self._instance_row(s, uuid)  # loaded after the UPDATE: current
            if result.rowcount == 0:
                if expected_vm_state is not ANY and row.vm_state not in _states(
                        expected_vm_state):
                    raise InstanceInvalidState(uuid, "vm_state", row.vm_state, "update")
                raise UnexpectedTaskState(uuid, expected_task_state, row.task_state)
            if "task_state" in values and values["task_state"] is None:
                # the flow is over: whatever the scheduler claimed for it goes
                claims.release(s, uuid)
            elif "host" in values and values["host"] and values["host"] != moved_from:
                # the move arrived: the instance row now counts on its new host, so a
                # claim there would count it twice (after its migration record ends)
                claims.release(s, uuid, host=str(values["host"]))
            return convert.row_to_instance(row)

    def instance_destroy(self, uuid: str) -> None:
        """Mark the instance deleted (its actions and migrations stay readable)."""
        with self._session() as s:
            row = self._instance_row(s, uuid)
            claims.release(s, uuid)
            row.deleted = True
            row.vm_state = str(VMState.DELETED)
            row.task_state = None

    # -- migrations -----------------------------------------------------------------------

    def migration_create(self, migration: Migration) -> Migration:
        """Store a migration; returns it with its ``id`` set."""
        with self._session() as s:
            row = MigrationRow(**convert.migration_columns(migration))
            s.add(row)
            s.flush()
            migration.id = row.id
        return migration

    def migration_get(self, migration_id: int) -> Migration:
        with self._session() as s:
            return convert.row_to_migration(self._migration_row(s, migration_id))

    @staticmethod
    def _migration_row(s: Session, migration_id: int) -> MigrationRow:
        row = s.get(MigrationRow, migration_id)
        if row is None:
            raise MigrationNotFound(f"migration {migration_id} not found")
        return row

    def migration_details(self, migration_id: int) -> dict[str, Any]:
        """Free-form details of a migration (downtime steps, disk info...)."""
        with self._session() as s:
            return dict(self._migration_row(s, migration_id).details or {})

    def migration_get_all(
        self,
        instance_uuid: str | None = None,
        host: str | None = None,
        statuses: Iterable[MigrationStatus] | None = None,
        migration_type: MigrationType | None = None,
    ) -> list[Migration]:
        """Migrations, oldest first, filtered by instance, host (source or dest),
        statuses and type."""
        with self._session() as s:
            q = select(MigrationRow)
            if instance_uuid is not None:
                q = q.where(MigrationRow.instance_uuid == instance_uuid)
            if host is not None:
                q = q.where((MigrationRow.source_host == host)
                            | (MigrationRow.dest_host == host))
            if statuses is not None:
                q = q.where(MigrationRow.status.in_([str(x) for x in statuses]))
            if migration_type is not None:
                q = q.where(MigrationRow.migration_type == str(migration_type))
            return [convert.row_to_migration(r) for r in s.scalars(q.order_by(MigrationRow.id))]

    def migration_update(
        self, migration_id: int, values: dict[str, Any], expected_status: Any = ANY
    ) -> Migration:
        """Change fields of a migration if its status is one of ``expected_status``;
        raises Conflict naming the actual status otherwise."""
        cols = convert.migration_values(values)
        with self._session() as s:
            row = self._migration_row(s, migration_id)
            if expected_status is not ANY and row.status not in _states(expected_status):
                raise Conflict(
                    f"migration {migration_id} is {row.status!r}, expected "
                    f"{_states(expected_status)}")
            details = cols.pop("details", None)
            for key, value in cols.items():
                setattr(row, key, value)
            if details:
                row.details = {**(row.details or {}), **details}
            row.updated_at = utcnow()
            s.flush()
            return convert.row_to_migration(row)

    def migration_record_progress(
        self, migration_id: int, values: dict[str, Any],
        details: dict[str, Any] | None = None, max_downtime_ms: int = 0,
    ) -> int:
        """Store a progress sample; ``progress`` never goes down.  Returns the stored
        progress.  Byte counters are replaced by the newest sample; ``details`` are
        merged into the migration's free-form details.  A ``max_downtime_ms`` > 0 that
        differs from the last of the migration's ``downtime_steps`` is appended to them
        (in the same transaction, so concurrent samples cannot lose a step)."""
        values = dict(values)
        with self._session() as s:
            row = self._migration_row(s, migration_id)
            progress = int(values.pop("progress", row.progress))
            row.progress = max(row.progress, min(100, progress))
            for key, value in values.items():
                setattr(row, key, int(value))
            merged = {**(row.details or {}), **(details or {})}
            steps = list(merged.get("downtime_steps", []))
            if max_downtime_ms > 0 and (not steps or steps[-1] != max_downtime_ms):
                merged["downtime_steps"] = [*steps, int(max_downtime_ms)]
            if merged != (row.details or {}):
                row.details = merged
            row.updated_at = utcnow()
            return row.progress

    def migration_claim_live_slot(
        self, migration_id: int, max_outbound: int, max_inbound: int
    ) -> SlotClaim:
        """Move a queued live migration to 'preparing' if both its source and its
        destination have a free slot: :attr:`SlotClaim.STARTED`; :attr:`SlotClaim.WAIT`
        while a slot is missing; :attr:`SlotClaim.SETTLED` when the migration is no
        longer queued (cancelled while waiting)."""
        with self._session() as s:
            hosts = s.execute(select(MigrationRow.source_host, MigrationRow.dest_host)
                              .where(MigrationRow.id == migration_id)).first()
            if hosts is None:
                raise MigrationNotFound(f"migration {migration_id} not found")
            # row locks on both hosts' service rows, taken before anything is
            # counted: a claimer in another process waits here until this commits
            claims.lock_hosts(s, [h for h in hosts if h])
            row = self._migration_row(s, migration_id)
            s.refresh(row)
            return claims.claim_live_slot(s, row, max_outbound, max_inbound)

    def host_usage(self, host: str, exclude_claim_of: str | None = None) -> HostUsage:
        """Resources claimed on ``host``: its instances (current flavor), plus
        incoming migrations in progress (new flavor), the source copy of resizes
        not yet confirmed or reverted (old flavor) and the scheduler's claims for
        moves no migration record counts yet (except ``exclude_claim_of``'s)."""
        with self._session() as s:
            return claims.host_usage(s, host, exclude_claim_of)

    # -- claims (the scheduler's, atomic in the database: virtsdk.db.claims) -------------

    def claim_move(self, host: str, consumer: str, need: HostUsage,
                   room: Callable[[HostUsage], bool]) -> bool:
        """Claim ``need`` on ``host`` for a move of instance ``consumer`` if
        ``room(what is claimed there now)`` says it fits (the caller's capacity
        arithmetic, :mod:`virtsdk.resources`); replaces the consumer's previous
        claim (a reschedule).  Atomic across processes.  False if it does not fit
        (nothing claimed)."""
        with self._session() as s:
            return claims.claim_move(s, host, consumer, need, room)

    def claim_boot(self, uuid: str, host: str,
                   room: Callable[[HostUsage], bool]) -> bool:
        """Place a new instance on ``host`` (its ``host``/``node``: the claim) if
        ``room(what is claimed there now)`` says it fits; atomic across processes.
        False otherwise."""
        with self._session() as s:
            if not claims.boot_fits(s, host, room):
                return False
            row = self._instance_row(s, uuid)
            row.host, row.node, row.updated_at = host, host, utcnow()
            return True

    def claim_get(self, consumer: str) -> tuple[str, HostUsage] | None:
        """The consumer's pending move claim: (host, resources), or None."""
        with self._session() as s:
            return claims.claim_of(s, consumer)

    def claim_release(self, consumer: str) -> None:
        with self._session() as s:
            claims.release(s, consumer)

    # -- instance actions and events ------------------------------------------------------

    def action_start(self, ctx: RequestContext, instance_uuid: str, action: str) -> int:
        with self._session() as s:
            row = ActionRow(instance_uuid=instance_uuid, action=action,
                            request_id=ctx.request_id, user_id=ctx.user_id,
                            project_id=ctx.project_id)
            s.add(row)
            s.flush()
            return row.id

    def _action_row(self, s: Session, ctx: RequestContext, instance_uuid: str) -> ActionRow:
        row = s.scalar(select(ActionRow).where(
            ActionRow.instance_uuid == instance_uuid,
            ActionRow.request_id == ctx.request_id).order_by(ActionRow.id.desc()))
        if row is None:  # an event outside any API request (recovery): make an action
            row = ActionRow(instance_uuid=instance_uuid, action="recover",
                            request_id=ctx.request_id, user_id=ctx.user_id,
                            project_id=ctx.project_id)
            s.add(row)
            s.flush()
        return row

    def action_finish(self, ctx: RequestContext, instance_uuid: str, message: str = "") -> None:
        """Close the action of this request; a context that opened none (recovery)
        closes every action of the instance still open."""
        with self._session() as s:
            row = s.scalar(select(ActionRow).where(
                ActionRow.instance_uuid == instance_uuid,
                ActionRow.request_id == ctx.request_id).order_by(ActionRow.id.desc()))
            rows = [row] if row is not None else s.scalars(select(ActionRow).where(
                ActionRow.instance_uuid == instance_uuid,
                ActionRow.finish_time.is_(None))).all()
            for r in rows:
                r.finish_time = utcnow()
                if message:
                    r.message = message[:2000]

    def action_finish_open(self, instance_uuid: str, message: str) -> int:
        """Close every unfinished action of the instance (recovery after a restart:
        the requests that opened them are gone).  Returns how many were closed."""
        with self._session() as s:
            rows = s.scalars(select(ActionRow).where(
                ActionRow.instance_uuid == instance_uuid,
                ActionRow.finish_time.is_(None))).all()
            for row in rows:
                row.finish_time = utcnow()
                row.message = row.message or message[:2000]
            return len(rows)

    def action_event_start(
        self, ctx: RequestContext, instance_uuid: str, event: str, host: str
    ) -> None:
        with self._session() as s:
            action = self._action_row(s, ctx, instance_uuid)
            s.add(ActionEventRow(action_id=action.id, event=event, host=host))

    def action_event_finish(
        self, ctx: RequestContext, instance_uuid: str, event: str, result: str,
        traceback: str = "",
    ) -> None:
        with self._session() as s:
            action = self._action_row(s, ctx, instance_uuid)
            row = s.scalar(select(ActionEventRow).where(
                ActionEventRow.action_id == action.id, ActionEventRow.event == event,
                ActionEventRow.finish_time.is_(None)).order_by(ActionEventRow.id.desc()))
            if row is None:
                row = ActionEventRow(action_id=action.id, event=event, host="")
                s.add(row)
            row.finish_time = utcnow()
            row.result = result
            row.traceback = traceback[-4000:]
            if result != "Success" and not action.message:
                action.message = result

    def action_latest_open(self, instance_uuid: str) -> bool:
        """True if the instance's most recent action has not finished yet."""
        with self._session() as s:
            row = s.scalar(select(ActionRow.finish_time).where(
                ActionRow.instance_uuid == instance_uuid).order_by(
                ActionRow.id.desc()).limit(1))
            latest = s.scalar(select(ActionRow.id).where(
                ActionRow.instance_uuid == instance_uuid).limit(1))
            return latest is not None and row is None

    def actions_get(self, instance_uuid: str) -> list[InstanceAction]:
        with self._session() as s:
            rows = s.scalars(select(ActionRow).where(
                ActionRow.instance_uuid == instance_uuid).order_by(ActionRow.id)).all()
            out = []
            for row in rows:
                events = s.scalars(select(ActionEventRow).where(
                    ActionEventRow.action_id == row.id).order_by(ActionEventRow.id)).all()
                out.append(convert.row_to_action(row, events))
            return out

    # -- services -------------------------------------------------------------------------

    def service_register(
        self, host: str, binary: str, topic: str, capabilities: dict[str, Any],
        limits: dict[str, Any], version: str = "",
    ) -> None:
        """Create or refresh a service row and count a heartbeat now (``disabled``
        and its reason are the operator's and stay as they are)."""
        with self._session() as s:
            row = s.scalar(select(ServiceRow).where(
                ServiceRow.host == host, ServiceRow.binary == binary))
            if row is None:
                row = ServiceRow(host=host, binary=binary, topic=topic)
                s.add(row)
            row.capabilities = capabilities
            row.limits = limits
            row.version = version or __version__
            row.forced_down = False
            row.updated_at = utcnow()

    def service_heartbeat(
        self, host: str, binary: str, resources: dict[str, Any] | None = None
    ) -> None:
        with self._session() as s:
            row = s.scalar(select(ServiceRow).where(
                ServiceRow.host == host, ServiceRow.binary == binary))
            if row is None:
                return
            row.report_count += 1
            row.updated_at = utcnow()
            if resources is not None:
                row.resources = resources

    def service_update(self, host: str, binary: str, values: dict[str, Any]) -> None:
        """Set ``disabled`` (and ``disabled_reason``) / ``forced_down`` (operators and
        tests); Conflict if there is no such service."""
        with self._session() as s:
            row = s.scalar(select(ServiceRow).where(
                ServiceRow.host == host, ServiceRow.binary == binary))
            if row is None:
                raise Conflict(f"no {binary} service on host {host!r}")
            for key in ("disabled", "disabled_reason", "forced_down", "updated_at"):
                if key in values:
                    setattr(row, key, values[key])

    def service_get_all(self, binary: str | None = COMPUTE) -> list[Service]:
        """Services of ``binary`` (every binary if None), by host."""
        with self._session() as s:
            q = select(ServiceRow)
            if binary is not None:
                q = q.where(ServiceRow.binary == binary)
            rows = s.scalars(q.order_by(ServiceRow.binary, ServiceRow.host)).all()
            return [convert.row_to_service(r) for r in rows]

    def compute_service(self, host: str) -> Service:
        """The compute service of ``host`` (InvalidHostname for a malformed name,
        HostNotFound when no such host registered)."""
        validate_hostname(host)
        svc = self.service_get(host, COMPUTE)
        if svc is None:
            raise HostNotFound(f"compute host {host!r} not found")
        return svc

    def service_get(self, host: str, binary: str = COMPUTE) -> Service | None:
        for svc in self.service_get_all(binary):
            if svc.host == host:
                return svc
        return None

    # -- drains ---------------------------------------------------------------------------

    def drain_create(self, host: str, live: bool, allow_cold: bool,
                     plan: dict[str, Any], guests: list[tuple[str, str]]) -> Drain:
        """Start the record of a drain of ``host`` with ``guests`` ((uuid, name),
        pending).  Conflict when a drain of that host is still running."""
        with self._session() as s:
            busy = s.scalar(select(DrainRow).where(
                DrainRow.host == host, DrainRow.status.in_(_DRAIN_ACTIVE)))
            if busy is not None:
                raise Conflict(f"host {host!r} is already being drained (drain {busy.id})")
            row = DrainRow(host=host, status="running", live=live, allow_cold=allow_cold,
                           plan=plan)
            s.add(row)
            s.flush()
            for uuid, name in guests:
                s.add(DrainGuestRow(drain_id=row.id, instance_uuid=uuid, name=name,
                                    status="pending", migration_ids=[], tried_hosts=[]))
            drain_id = row.id
        return self.drain_get(drain_id)

    def drain_get(self, drain_id: int) -> Drain:
        with self._session() as s:
            row = s.get(DrainRow, drain_id)
            if row is None:
                raise DrainNotFound(f"drain {drain_id} not found")
            guests = s.scalars(select(DrainGuestRow).where(
                DrainGuestRow.drain_id == drain_id).order_by(DrainGuestRow.id)).all()
            return convert.row_to_drain(row, guests)

    def drain_get_all(self, host: str | None = None,
                      active_only: bool = False) -> list[Drain]:
        """Drains, oldest first (of ``host``; only running or aborting ones)."""
        with self._session() as s:
            query = select(DrainRow.id).order_by(DrainRow.id)
            if host is not None:
                query = query.where(DrainRow.host == host)
            if active_only:
                query = query.where(DrainRow.status.in_(_DRAIN_ACTIVE))
            ids = list(s.scalars(query).all())
        return [self.drain_get(i) for i in ids]

    def drain_update(self, drain_id: int, values: dict[str, Any],
                     expected_status: Iterable[str] | None = None) -> bool:
        """Set ``status`` / ``message`` / ``plan`` (a finished status stamps
        ``finished_at``); False when ``expected_status`` does not hold."""
        with self._session() as s:
            row = s.get(DrainRow, drain_id)
            if row is None:
                raise DrainNotFound(f"drain {drain_id} not found")
            if expected_status is not None and row.status not in list(expected_status):
                return False
            for key in ("status", "message", "plan"):
                if key in values:
                    setattr(row, key, values[key])
            if values.get("status") in ("complete", "incomplete"):
                row.finished_at = utcnow()
            return True

    def drain_guest_update(self, drain_id: int, instance_uuid: str,
                           values: dict[str, Any]) -> None:
        """Update one guest of a drain (``migration_id`` is also appended to
        ``migration_ids``, ``tried_host`` to ``tried_hosts``)."""
        with self._session() as s:
            row = s.scalar(select(DrainGuestRow).where(
                DrainGuestRow.drain_id == drain_id,
                DrainGuestRow.instance_uuid == instance_uuid))
            if row is None:
                raise DrainNotFound(f"drain {drain_id} has no guest {instance_uuid}")
            for key in ("status", "mode", "dest_host", "migration_id", "attempts",
                        "estimated_s", "downtime_ms", "error", "started_at",
                        "finished_at"):
                if key in values:
                    setattr(row, key, values[key])
            if values.get("migration_id") is not None:
                row.migration_ids = [*row.migration_ids, values["migration_id"]]
            if values.get("tried_host"):
                row.tried_hosts = [*row.tried_hosts, values["tried_host"]]


def now() -> dt.datetime:
    return utcnow()
