"""The conductor: RPC endpoint of topic ``conductor`` that orchestrates migrations.

Who calls it: the API (``migrate_server`` and ``build_instance``, RPC calls) and
compute managers (``resize_instance``, a cast that reschedules a cold migration).
It runs the scheduler in-process and casts work to compute hosts; it never talks to
a driver.  ``migrate_server`` dispatches as Nova's conductor does: ``live and not flavor`` ->
live migration (:class:`~virtsdk.conductor.live_migration.LiveMigrationTask`),
``not live and flavor`` -> cold migration wrapped in the action event
``cold_migrate``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import oslo_messaging
from oslo_config import cfg

from virtsdk import actions
from virtsdk.compute.fence import Fence
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.conductor.live_migration import LiveMigrationTask
from virtsdk.conductor.rpcapi import VERSIONS as CONDUCTOR_RPC_VERSIONS
from virtsdk.context import RequestContext
from virtsdk.db.api import IN_PROGRESS, Database
from virtsdk.exceptions import (
    Conflict,
    InstanceNotFound,
    Invalid,
    NoValidHost,
)
from virtsdk.objects import Flavor, Instance, Migration
from virtsdk.scheduler import RequestSpec, Scheduler
from virtsdk.states import MigrationStatus, MigrationType, TaskState, VMState

LOG = logging.getLogger(__name__)

HOST = "conductor"


class ConductorManager:
    """See the module docstring."""

    #: answers every conductor RPC API version up to the current one (rpcapi.VERSIONS)
    target = oslo_messaging.Target(version=CONDUCTOR_RPC_VERSIONS.current)

    def __init__(self, conf: cfg.ConfigOpts, db: Database, scheduler: Scheduler,
                 fence: Fence | None = None) -> None:
        self.conf = conf
        self.db = db
        self.scheduler = scheduler
        self.fence = fence or Fence("conductor")
        self.compute_rpc = self.fence.guard(ComputeAPI(conf))
        #: instances whose migrate_server request this conductor is handling now;
        #: :meth:`settle_lost_requests` leaves them alone (under ``_requests_lock``)
        self._handling: set[str] = set()
        self._requests_lock = threading.Lock()

    # -- start-up ---------------------------------------------------------------------------

    def recover_interrupted(self, ctx: RequestContext) -> None:
        """Called by the service before it serves: settle what the previous
        conductor was doing when it died (one conductor per deployment: every
        request in its hands died with it).  A live migration still 'accepted'
        (the source was never told, or its cast is settled by compare-and-swap
        against this) ends 'failed' with the instance restored; an instance left in
        resize_prep with no migration (the cast to the destination never made
        one) gets its task cleared.  Compare-and-swap throughout: a compute that
        moved the flow on meanwhile keeps it."""
        why = "interrupted by a restart of the conductor"
        for m in self.db.migration_get_all(statuses=[MigrationStatus.ACCEPTED],
                                           migration_type=MigrationType.LIVE):
            try:
                self.db.migration_update(int(m.id or 0), {
                    "status": MigrationStatus.FAILED, "error": why},
                    expected_status=MigrationStatus.ACCEPTED)
                self.db.instance_update(m.instance_uuid, {"task_state": None},
                                        expected_task_state=TaskState.MIGRATING)
            except (Conflict, InstanceNotFound):
                continue
            self.db.action_finish_open(m.instance_uuid, why)
        for inst in self.db.instance_get_all():
            if inst.task_state != TaskState.RESIZE_PREP or self.db.migration_get_all(
                    instance_uuid=inst.uuid, statuses=IN_PROGRESS):
                continue
            self._give_back(inst.uuid, TaskState.RESIZE_PREP, why)

    def _give_back(self, uuid: str, task: TaskState, why: str) -> bool:
        """Clear the instance's task if it still is ``task`` (compare-and-swap) and
        end its open actions with ``why``; False if someone moved it on."""
        try:
            self.db.instance_update(uuid, {"task_state": None}, expected_task_state=task)
        except (Conflict, InstanceNotFound):
            return False
        self.db.action_finish_open(uuid, why)
        return True

    # -- boot -------------------------------------------------------------------------------

    def build_instance(self, ctx: RequestContext, instance: Instance,
                       host: str | None) -> str:
        """RPC call from the API: pick a host (or check the requested one), record it
        on the instance (its claim) and cast the build there.  NoValidHost puts the
        instance in ERROR and is raised to the caller."""
        spec = RequestSpec(flavor=instance.flavor, instance_uuid=instance.uuid,
                           force_hosts=[host] if host else [])
        try:
            chosen = self.scheduler.select_and_claim(ctx, spec, boot=True)[0]
        except NoValidHost:
            self.db.instance_update(instance.uuid, {"vm_state": VMState.ERROR})
            actions.finish_action(self.db, ctx, instance.uuid, "no valid host")
            raise
        instance = self.db.instance_get(instance.uuid)
        try:
            self.compute_rpc.build_and_run_instance(ctx, chosen, instance)
        except Exception:
            self.db.instance_update(instance.uuid, {"vm_state": VMState.ERROR})
            actions.finish_action(self.db, ctx, instance.uuid, "build could not be sent")
            raise
        return chosen

    # -- migrate_server ---------------------------------------------------------------------

    def migrate_server(self, ctx: RequestContext, instance: Instance,
                       scheduler_hint: dict[str, Any], live: bool, rebuild: bool,
                       flavor: Flavor | None, block_migration: bool | None,
                       disk_over_commit: bool, migration_type: str = "") -> int | None:
        """RPC call from the API.  Live: returns the migration id once the source was
        told to start.  Cold: returns once ``prep_resize`` was cast to the chosen host
        (the migration record is made there).  Scheduling and check failures restore
        the instance and are raised."""
        if live and not rebuild and not flavor:
            task = TaskState.MIGRATING
        elif not live and not rebuild and flavor:
            task = TaskState.RESIZE_PREP
        else:
            raise Invalid(f"migrate_server: unsupported combination live={live} "
                          f"rebuild={rebuild} flavor={getattr(flavor, 'name', None)}")
        with self._requests_lock:
            instance = self.db.instance_get(instance.uuid)
            if instance.task_state != task:
                # settled as lost (its caller timed out long ago) or taken over:
                # a late request must not start a flow nobody waits for
                raise Conflict(f"migrate_server for {instance.uuid} arrived with task "
                               f"{instance.task_state!r}, not {str(task)!r}: the request "
                               "was given up; nothing done")
            self._handling.add(instance.uuid)
        try:
            if task == TaskState.MIGRATING:
                return self._live_migrate(ctx, instance, scheduler_hint, block_migration,
                                          disk_over_commit)
            assert flavor is not None
            with actions.event_reporter(self.db, ctx, instance.uuid, "cold_migrate", HOST):
                self._cold_migrate(ctx, instance, flavor, scheduler_hint,
                                   migration_type or str(MigrationType.RESIZE))
            return None
        finally:
            with self._requests_lock:
                self._handling.discard(instance.uuid)

    def settle_lost_requests(self, ctx: RequestContext, older_than: float) -> list[str]:
        """Clear the task of instances whose migration request never became a flow:
        the API set ``migrating`` / ``resize_prep`` and opened the action more than
        ``older_than`` seconds ago, no migration of the instance is in progress and
        this conductor is not handling the request.  That is a request whose call
        timed out and whose message was lost (a broker restart drops queued messages;
        on RabbitMQ a call's message also expires with its timeout), so nothing will
        ever move it on.  The action ends with the reason; the instance keeps its
        vm_state.  Compare-and-swap on the task: a flow that started meanwhile keeps
        it.  Returns the uuids settled.  Run periodically by the conductor service
        (``[api] lost_request_timeout``)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cutoff = now - dt.timedelta(seconds=older_than)
        why = (f"the request never reached a flow within {older_than:g} s (its call to "
               "the conductor timed out and the message was lost); nothing was done")
        settled: list[str] = []
        for inst in self.db.instance_get_all():
            if inst.task_state not in (TaskState.MIGRATING, TaskState.RESIZE_PREP):
                continue
            acts = self.db.actions_get(inst.uuid)
            opened = [a for a in acts if a.finish_time is None]
            if not opened or opened[-1].start_time > cutoff:
                continue
            with self._requests_lock:
                if inst.uuid in self._handling or self.db.migration_get_all(
                        instance_uuid=inst.uuid, statuses=IN_PROGRESS):
                    continue
                if not self._give_back(inst.uuid, inst.task_state, why):
                    continue
            LOG.warning("instance %s: %s request lost; task %s cleared", inst.uuid,
                        opened[-1].action, inst.task_state)
            settled.append(inst.uuid)
        return settled

    def _cold_migrate(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                      scheduler_hint: dict[str, Any], migration_type: str) -> None:
        props = scheduler_hint.get("filter_properties", {})
        spec = RequestSpec(flavor=flavor, instance_uuid=instance.uuid,
                           ignore_hosts=list(props.get("ignore_hosts", [])),
                           force_hosts=list(props.get("force_hosts", [])))
        try:
            hosts = self.scheduler.select_and_claim(
                ctx, spec, max_hosts=self.conf.scheduler.max_attempts)
        except NoValidHost as exc:
            actions.error_out_instance(self.db, instance.uuid, exc, instance.vm_state,
                                     rollback=True)
            actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
            raise
        try:
            self.compute_rpc.prep_resize(ctx, hosts[0], instance, flavor, hosts[1:],
                                         migration_type)
        except Exception as exc:
            actions.error_out_instance(self.db, instance.uuid, exc, instance.vm_state,
                                     rollback=True)
            actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
            raise

    def resize_instance(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                        alternates: list[str], migration_type: str) -> None:
        """Cast from a destination that refused ``prep_resize`` reschedulably: try
        the next alternate that is still up; none left -> instance restored."""
        up = {h.host for h in self.scheduler.host_states() if h.is_up and not h.disabled}
        instance = self.db.instance_get(instance.uuid)
        spec = RequestSpec(flavor=flavor, instance_uuid=instance.uuid)
        remaining = [h for h in alternates if h in up]
        while remaining and not self.scheduler.claim(spec, remaining[0]):
            remaining.pop(0)  # taken meanwhile by a concurrent request
        if not remaining:
            exc = NoValidHost(f"no alternate host left for {instance.uuid} "
                              f"(tried {', '.join(alternates) or 'none'})")
            actions.error_out_instance(self.db, instance.uuid, exc, instance.vm_state,
                                     rollback=True)
            actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
            return
        try:
            self.compute_rpc.prep_resize(ctx, remaining[0], instance, flavor,
                                         remaining[1:], migration_type)
        except Exception as exc:  # noqa: BLE001 - a cast: restore and record
            actions.error_out_instance(self.db, instance.uuid, exc, instance.vm_state,
                                     rollback=True)
            actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))

    def _live_migrate(self, ctx: RequestContext, instance: Instance,
                      scheduler_hint: dict[str, Any], block_migration: bool | None,
                      disk_over_commit: bool) -> int:
        migration = self.db.migration_create(Migration(
            instance_uuid=instance.uuid, source_host=str(instance.host),
            migration_type=MigrationType.LIVE, source_node=instance.node,
            # dest_host is recorded once the destination is claimed and checked:
            # a migration naming it counts as its claim, which the claim itself
            # would then count twice
            status=MigrationStatus.ACCEPTED,
            old_flavor=instance.flavor, new_flavor=instance.flavor))
        task = LiveMigrationTask(self.conf, self.db, self.scheduler, self.compute_rpc, ctx,
                                 instance, scheduler_hint.get("host"), block_migration,
                                 disk_over_commit, migration)
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid, "conductor_live_migrate",
                                      HOST):
                task.execute()
        except Exception as exc:
            self._live_checks_failed(ctx, instance, migration, exc)
            raise
        return int(migration.id or 0)

    def _live_checks_failed(self, ctx: RequestContext, instance: Instance,
                            migration: Migration, exc: BaseException) -> None:
        """Record a failed live-migration request, compare-and-swap: only a
        migration still 'accepted' (the conductor's own status) and an instance
        still 'migrating' are changed.  A late answer (an RPC timeout after the
        source restarted and its recovery settled the migration) never overwrites
        the newer outcome."""
        try:
            self.db.migration_update(int(migration.id or 0), {
                "status": MigrationStatus.ERROR, "error": actions.describe(exc)},
                expected_status=MigrationStatus.ACCEPTED)
        except Conflict:
            LOG.info("live migration %s was settled meanwhile; keeping that outcome "
                     "(late %s)", migration.id, type(exc).__name__)
            return
        # still 'accepted': the source was never told, nothing moved; the
        # instance goes back to the state it had (leftovers of a check are the
        # reconcile task's business)
        try:
            self.db.instance_update(
                instance.uuid, {"task_state": None, "vm_state": instance.vm_state},
                expected_task_state=TaskState.MIGRATING)
        except (Conflict, InstanceNotFound):
            return
        actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
