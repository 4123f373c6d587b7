"""Live migration on the compute side (flow and statuses: docs/flows.md).

The compute manager builds two flow objects and forwards these RPC methods to them
(the hosts they run on, and who sends them)::

    dest   check_can_live_migrate_destination   call from the conductor
    source check_can_live_migrate_source        call from the destination
    dest   pre_live_migration                   call from the source
    dest   post_live_migration_at_destination   call from the source (post path)
    dest   rollback_live_migration_at_destination  call from the source (failure)
        -> :class:`~.live_migration_dest.LiveMigrationDestination`
    source live_migration                       cast from the conductor; runs the
                                                driver in a thread of its own
    source live_migration_abort / _force_complete  calls from the API
        -> :class:`LiveMigrationFlow` (this module)

Migration statuses: accepted (conductor) -> queued (waiting for a slot: per-host
limits on outbound and inbound migrations) -> preparing -> running (-> running
(post-copy)) -> completed; or failed / cancelled / error.  The instance keeps task
MIGRATING until the record is final; then the task is cleared.

The driver's ``post_method`` / ``recover_method`` callbacks only record which way
the migration went; once ``live_migration`` returned, the flow runs the post
path (source post, destination post over RPC, source clean-up) or both sides'
rollback.  A driver that returns without calling either is judged by asking both
hosts where the guest runs.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable

from oslo_config import cfg

from virtsdk import actions, network
from virtsdk.compute.fence import ServiceFenced
from virtsdk.compute.flow_records import FlowRecords
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import (
    Conflict,
    InstanceInvalidState,
    InstanceNotFound,
    LiveMigrationAborted,
    MigrationError,
    MigrationNotFound,
)
from virtsdk.objects import (
    Instance,
    JobStats,
    LiveMigrateData,
    Migration,
)
from virtsdk.states import MigrationStatus, PowerState, SlotClaim, VMState

LOG = logging.getLogger(__name__)

Status = MigrationStatus
EVENT = "compute_live_migration"


class DriverOutcome:
    """Which way the driver's ``live_migration`` says the migration went: its
    ``post_method`` / ``recover_method`` (the first call wins) record the direction
    and the completed migrate data, and do nothing else."""

    def __init__(self) -> None:
        #: True: the guest runs on the destination; False: it stays; None: not told
        self.moved: bool | None = None
        self.data: LiveMigrateData | None = None

    def post_method(self, context: RequestContext, instance: Instance, dest: str,
                    block_migration: bool, migrate_data: LiveMigrateData) -> None:
        if self.moved is None:
            self.moved, self.data = True, migrate_data

    def recover_method(self, context: RequestContext, instance: Instance, dest: str,
                       migrate_data: LiveMigrateData) -> None:
        if self.moved is None:
            self.moved, self.data = False, migrate_data


class LiveMigrationFlow:
    """The source's side of live migrations on one compute host (see the module
    docstring).  Explicit dependencies: the options, this host's name, the manager's
    (fenced) database, driver and RPC client, its
    :class:`~.flow_records.FlowRecords`, and the service's ``stopped`` event.  It
    owns its state: the migration threads running here and the aborts asked of
    them."""

    def __init__(self, conf: cfg.ConfigOpts, host: str, db: Database,
                 driver: ComputeDriver, compute_rpc: ComputeAPI, records: FlowRecords,
                 stopped: threading.Event) -> None:
        self.conf = conf
        self.host = host
        self.db = db
        self.driver = driver
        self.compute_rpc = compute_rpc
        self.records = records
        self.stopped = stopped
        self._threads: dict[int, threading.Thread] = {}
        self._aborted: set[int] = set()
        self._state_lock = threading.Lock()

    def join(self) -> None:
        """Wait for the live migrations running here to end (service drain)."""
        with self._state_lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join()

    # -- source side ------------------------------------------------------------------------

    def live_migration(self, ctx: RequestContext, instance: Instance, dest: str,
                       block_migration: bool | None, migration: Migration,
                       migrate_data: LiveMigrateData) -> None:
        """Source, cast by the conductor after its checks: start the migration in a
        thread of its own and return."""
        mid = int(migration.id or 0)
        thread = threading.Thread(
            target=self._do_live_migration, name=f"live-migration-{mid}", daemon=True,
            args=(ctx, instance, dest, block_migration, migration, migrate_data))
        with self._state_lock:
            self._threads[mid] = thread
        thread.start()

    def _wait_for_slot(self, mid: int, dest: str) -> bool:
        """Hold the migration in 'queued' until this host has an outbound slot and
        ``dest`` an inbound one; False if it was cancelled (or the service stops)."""
        max_out = self.conf.compute.max_concurrent_live_migrations_outbound
        while not self.stopped.is_set():
            svc = self.db.service_get(dest)
            max_in = int(svc.limits.get("max_inbound", 0)) if svc is not None else 0
            outcome = self.db.migration_claim_live_slot(mid, max_out, max_in)
            if outcome is SlotClaim.STARTED:
                return True
            if outcome is SlotClaim.SETTLED:
                return False
            self.stopped.wait(self.conf.compute.queue_poll_interval)
        return False

    def _do_live_migration(self, ctx: RequestContext, instance: Instance, dest: str,
                           block_migration: bool | None, migration: Migration,
                           migrate_data: LiveMigrateData) -> None:
        mid = int(migration.id or 0)
        try:
            instance = self.db.instance_get(instance.uuid)
            self.db.action_event_start(ctx, instance.uuid, EVENT, self.host)
            try:
                self.db.migration_update(mid, {"status": Status.QUEUED},
                                         expected_status=Status.ACCEPTED)
            except Conflict:  # aborted before it was queued
                self._end_live(ctx, instance, mid, None, None)
                return
            if not self._wait_for_slot(mid, dest):
                self._end_live(ctx, instance, mid, None, None)
                return
            self._run_live_migration(ctx, instance, dest, block_migration, migration,
                                     migrate_data)
        except ServiceFenced:
            return  # this service incarnation is gone: recovery owns the flow
        except Exception as exc:  # last resort: never lose the outcome
            LOG.exception("live migration %s of %s crashed", mid, instance.uuid)
            if not self.stopped.is_set():
                self._end_live(ctx, instance, mid, Status.ERROR, exc, vm_state=VMState.ERROR)
        finally:
            with self._state_lock:
                self._threads.pop(mid, None)
                self._aborted.discard(mid)

    def _run_live_migration(self, ctx: RequestContext, instance: Instance, dest: str,
                            block_migration: bool | None, migration: Migration,
                            migrate_data: LiveMigrateData) -> None:
        mid = int(migration.id or 0)
        block = bool(migrate_data.block_migration if migrate_data.block_migration
                     is not None else block_migration)
        try:
            disk_info = self.driver.get_instance_disk_info(instance) if block else None
            migrate_data = self.compute_rpc.pre_live_migration(
                ctx, dest, instance, block, disk_info, migrate_data, migration)
        except Exception as exc:  # noqa: BLE001 - rolled back and recorded
            failed = self.rollback(ctx, instance, dest, migrate_data, migration)
            self._end_live(ctx, instance, mid, Status.ERROR, failed or exc,
                           vm_state=VMState.ERROR if failed else None)
            return
        if mid in self._aborted:
            failed = self.rollback(ctx, instance, dest, migrate_data, migration)
            self._end_live(ctx, instance, mid, Status.CANCELLED,
                           failed or LiveMigrationAborted("aborted while preparing"))
            return
        self.db.migration_update(mid, {"status": Status.RUNNING},
                                 expected_status=Status.PREPARING)
        # the driver's callbacks only record which way it went (with its completed
        # migrate data); post or rollback runs here, after live_migration returned
        outcome = DriverOutcome()
        error: BaseException | None = None
        try:
            self.driver.live_migration(ctx, instance, dest, outcome.post_method,
                                       outcome.recover_method, block, migrate_data,
                                       migration, progress=self._live_progress(mid, instance))
        except Exception as exc:  # noqa: BLE001 - the outcome says what to do
            error = exc
        if self.stopped.is_set():
            return  # the service "crashed": recovery at restart settles the records
        broken: BaseException | None = None
        if outcome.moved is None:
            # the driver broke its contract: ask both hosts where the guest runs
            error = broken = error or MigrationError("driver returned without post or recover")
            outcome.moved, outcome.data = self._guest_moved(ctx, instance, dest), migrate_data
        data = outcome.data if outcome.data is not None else migrate_data
        if outcome.moved:
            try:
                self._post_live_migration(ctx, instance, dest, block, data, migration)
            except Exception as exc:  # noqa: BLE001 - the guest runs there: ERROR
                LOG.exception("post live migration of %s failed", instance.uuid)
                self._end_live(ctx, instance, mid, Status.ERROR, exc,
                               vm_state=VMState.ERROR, host=dest)
                return
            self._end_live(ctx, instance, mid, Status.ERROR if broken else Status.COMPLETED,
                           broken, host=dest if broken else None)
            return
        rollback_error = self.rollback(ctx, instance, dest, data, migration)
        cancelled = mid in self._aborted or isinstance(error, LiveMigrationAborted)
        self._end_live(ctx, instance, mid,
                       Status.ERROR if rollback_error else (
                           Status.CANCELLED if cancelled else Status.FAILED),
                       rollback_error or error,
                       vm_state=VMState.ERROR if rollback_error else None)

    def _guest_moved(self, ctx: RequestContext, instance: Instance, dest: str) -> bool:
        """True if the guest no longer runs here but runs on ``dest`` (asked of both
        drivers); used when a driver ended without telling which way it went."""
        try:
            here = self.driver.get_info(instance).state
        except InstanceNotFound:
            here = None
        if here in (PowerState.RUNNING, PowerState.PAUSED):
            return False
        try:
            there = self.compute_rpc.instance_power_state(ctx, dest, instance)
        except Exception:  # noqa: BLE001 - unknown: keep the source's view
            return False
        return there is not None and PowerState(there) in (PowerState.RUNNING,
                                                           PowerState.PAUSED)

    def _live_progress(self, mid: int, instance: Instance) -> Callable[[JobStats], None]:
        """The driver's progress callback: stores each sample (progress never goes
        down; a changed ``max_downtime_ms`` is appended to the record's
        ``downtime_steps``) and delivers an abort that arrived before the driver's job
        existed."""
        abort_sent: list[bool] = []

        def record(stats: JobStats) -> None:
            if self.stopped.is_set():
                return
            if mid in self._aborted and not abort_sent and stats.job_type == "unbounded":
                abort_sent.append(True)
                try:
                    self.driver.live_migration_abort(instance)
                except Exception:  # the job may have just ended
                    LOG.exception("late abort of migration %s failed", mid)
            if stats.postcopy:
                try:
                    self.db.migration_update(mid, {"status": Status.POSTCOPY},
                                             expected_status=Status.RUNNING)
                except Conflict:
                    pass
            self.db.migration_record_progress(
                mid, {
                    "progress": int(stats.progress),
                    "memory_total": stats.memory_total,
                    "memory_processed": stats.memory_processed,
                    "memory_remaining": stats.memory_remaining,
                    "disk_total": stats.disk_total, "disk_processed": stats.disk_processed,
                    "disk_remaining": stats.disk_remaining,
                }, details={
                    # a measurement or nothing (None): never an estimate
                    "downtime_ms": stats.downtime_ms if stats.downtime_measured else None,
                    "memory_iteration": stats.memory_iteration,
                    "job_type": stats.job_type,
                    "time_elapsed_ms": stats.time_elapsed_ms,
                    "data_processed": stats.data_processed,
                    "memory_dirty_rate": stats.memory_dirty_rate,
                    "cpu_throttle": stats.cpu_throttle,
                    "timeline": stats.timeline},
                max_downtime_ms=stats.max_downtime_ms)
        return record

    def _post_live_migration(self, ctx: RequestContext, instance: Instance, dest: str,
                             block: bool, migrate_data: LiveMigrateData,
                             migration: Migration) -> None:
        """Source, after the driver's ``live_migration`` returned having called
        ``post_method``: the guest runs on ``dest``."""
        self.records.notify(ctx, "live_migration.post.start", instance, migration_id=migration.id)
        self.driver.post_live_migration(ctx, instance, migrate_data)
        self.compute_rpc.post_live_migration_at_destination(ctx, dest, instance, block,
                                                            migration)
        self.driver.post_live_migration_at_source(ctx, instance,
                                                  network.network_info(instance))
        self.records.notify(ctx, "live_migration.post.end", instance, migration_id=migration.id)

    def rollback(self, ctx: RequestContext, instance: Instance, dest: str,
                 migrate_data: LiveMigrateData, migration: Migration
                 ) -> BaseException | None:
        """Both sides' rollback (also run by recovery); returns the first error (None
        if clean)."""
        first: BaseException | None = None
        try:
            self.driver.rollback_live_migration_at_source(ctx, instance, migrate_data)
        except Exception as exc:  # the destination must still be cleaned
            LOG.exception("rollback at source of %s failed", instance.uuid)
            first = exc
        try:
            self.compute_rpc.rollback_live_migration_at_destination(
                ctx, dest, instance, not migrate_data.is_shared_block_storage,
                migrate_data, migration)
        except Exception as exc:
            LOG.exception("rollback at destination %s of %s failed", dest, instance.uuid)
            first = first or exc
        self.records.notify(ctx, "live_migration._rollback.end", instance,
                            migration_id=migration.id)
        return first

    def _end_live(self, ctx: RequestContext, instance: Instance, mid: int,
                  status: MigrationStatus | None, error: BaseException | None,
                  vm_state: VMState | None = None, host: str | None = None) -> None:
        """Final bookkeeping, in this order: the migration record, then the instance
        (task cleared last), then the action event."""
        values: dict[str, object] = {}
        if status is not None:
            values["status"] = status
        if error is not None:
            values["error"] = actions.describe(error)
        if values:
            self.db.migration_update(mid, values)
        inst_values: dict[str, object] = {"task_state": None,
                                          "vm_state": vm_state or VMState.ACTIVE}
        if host is not None:
            inst_values["host"] = host
            inst_values["node"] = host
        try:
            self.db.instance_update(instance.uuid, inst_values)
        except Exception:  # deleted meanwhile
            LOG.exception("could not settle instance %s", instance.uuid)
        result_ok = status in (Status.COMPLETED,)
        tb = "" if error is None else "".join(traceback.format_exception(error))
        self.db.action_event_finish(ctx, instance.uuid, EVENT,
                                    "Success" if result_ok else "Error", tb)
        actions.finish_action(self.db, ctx, instance.uuid,
                              "" if error is None else actions.describe(error))

    # -- abort / force complete -------------------------------------------------------------

    def live_migration_abort(self, ctx: RequestContext, instance: Instance,
                             migration_id: int) -> None:
        """Source, RPC call from the API: cancel a queued, preparing or running live
        migration.  Queued: marked cancelled at once; preparing: cancelled after
        pre_live_migration; running: the driver aborts the job and the flow ends in
        'cancelled' through recover_method."""
        migration = self.db.migration_get(migration_id)
        if migration.status in (Status.ACCEPTED, Status.QUEUED):
            try:
                self.db.migration_update(migration_id, {
                    "status": Status.CANCELLED, "error": "aborted while queued"},
                    expected_status=(Status.ACCEPTED, Status.QUEUED))
                return
            except Conflict:
                migration = self.db.migration_get(migration_id)
        if migration.status == Status.PREPARING:
            self._aborted.add(migration_id)
            return
        if migration.status == Status.RUNNING:
            self._aborted.add(migration_id)
            try:
                self.driver.live_migration_abort(self.db.instance_get(instance.uuid))
            except MigrationNotFound:
                pass  # the job is starting: the progress callback delivers the abort
            return
        raise InstanceInvalidState(instance.uuid, "migration status", str(migration.status),
                                   "abort the live migration of")

    def live_migration_force_complete(self, ctx: RequestContext, instance: Instance,
                                      migration_id: int) -> None:
        """Source, RPC call from the API: ask the driver to finish a running
        migration now (post-copy or pausing the guest)."""
        migration = self.db.migration_get(migration_id)
        if migration.status != Status.RUNNING:
            raise InstanceInvalidState(instance.uuid, "migration status",
                                       str(migration.status),
                                       "force the live migration to complete of")
        self.driver.live_migration_force_complete(self.db.instance_get(instance.uuid))
