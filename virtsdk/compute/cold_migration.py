"""Cold migration and resize on the compute side (the chain of docs/flows.md).

:class:`ColdMigrationFlow` holds the steps that move the instance; confirming or
reverting the result is :class:`~.confirm_revert.ConfirmRevertFlow`.  The compute
manager builds both; it forwards these RPC methods (all casts, each running on the
host named in its docstring) to the first::

    dest   prep_resize        claim, Migration record (pre-migrating), prepare target
    source resize_instance    migrate_disk_and_power_off (migrating -> post-migrating)
    dest   finish_resize      finish_migration; vm_state RESIZED, migration finished
    source restore_resize_source  after a failed finish_resize: restart the kept copy
    dest   abort_resize_target    after a failed transfer: undo the target

Failure handling keeps one rule: the instance and its disks survive on exactly one
host.  Before ``finish_migration`` the source copy is authoritative: the destination
is cleaned (``abort_resize_target``) and the source restored
(``finish_revert_migration``).  Then the instance's vm_state follows Nova's "error
out on exception": restored after a rollback-class error, ERROR otherwise.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from oslo_config import cfg

from virtsdk import actions, network
from virtsdk.compute.claims import HostClaims
from virtsdk.compute.flow_records import FlowRecords, old_vm_state
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import Conflict, NotSupported, RescheduledError
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    ImageMeta,
    Instance,
    Migration,
)
from virtsdk.states import MigrationStatus, MigrationType, PowerState, TaskState, VMState

LOG = logging.getLogger(__name__)

Status = MigrationStatus


class ConductorClient(Protocol):
    """What a compute host asks of the conductor, given to the manager by whoever
    builds it (:class:`virtsdk.conductor.rpcapi.ConductorAPI`; compute never imports
    the layer above it)."""

    def resize_instance(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                        alternates: list[str], migration_type: str) -> None:
        """Cast: schedule a refused cold migration / resize again on ``alternates``."""


@dataclass
class PrepResizeProgress:
    """How far ``prep_resize`` got on the destination: what a failure must undo."""

    #: the claim's Migration record, once created
    migration: Migration | None = None
    #: the driver's answer from ``prepare_migrate_disk_target``, once prepared
    migrate_data: ColdMigrateData | None = None


class ColdMigrationFlow:
    """The cold-migration / resize steps of one compute host, up to the resized
    instance (see the module docstring).  Explicit dependencies: the options, this
    host's name, the (fenced) database, driver and RPC clients of the manager, its
    :class:`~.flow_records.FlowRecords` and :class:`~.claims.HostClaims`, and the
    service's ``stopped`` event (set when the service stops: late callbacks of a
    "crashed" service do nothing)."""

    def __init__(self, conf: cfg.ConfigOpts, host: str, db: Database,
                 driver: ComputeDriver, compute_rpc: ComputeAPI,
                 conductor_rpc: ConductorClient, records: FlowRecords,
                 claims: HostClaims, stopped: threading.Event) -> None:
        self.conf = conf
        self.host = host
        self.db = db
        self.driver = driver
        self.compute_rpc = compute_rpc
        self.conductor_rpc = conductor_rpc
        self.records = records
        self.claims = claims
        self.stopped = stopped

    # -- destination: prep_resize ---------------------------------------------------------

    def prep_resize(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                    alternates: list[str], migration_type: str) -> None:
        """Destination, cast by the conductor.  Claims resources (the Migration record
        in 'pre-migrating' is the claim), asks the driver to get ready for the disks,
        then casts ``resize_instance`` to the source.  A reschedulable failure
        (RescheduledError, e.g. InsufficientResources) goes back to the conductor with
        the remaining ``alternates``; when none is left the instance is restored."""
        instance = self.db.instance_get(instance.uuid)
        restore = instance.vm_state
        done = PrepResizeProgress()
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid, "compute_prep_resize",
                                        self.host):
                self._prep_resize(ctx, instance, flavor, MigrationType(migration_type), done)
        except RescheduledError as refused:
            self.records.mark_migration(done.migration, Status.ERROR, refused)
            failure: Exception = refused
            if alternates:
                LOG.info("prep_resize of %s refused by %s (%s); rescheduling to %s",
                         instance.uuid, self.host, refused, alternates)
                try:
                    self.conductor_rpc.resize_instance(ctx, instance, flavor, alternates,
                                                       migration_type)
                    return
                except Exception as lost:  # noqa: BLE001 - reschedule lost: restore
                    failure = lost
            self.records.fail_flow(ctx, instance, failure, restore,
                                   {"old_flavor": None, "new_flavor": None}, rollback=True)
            return
        except Exception as exc:  # noqa: BLE001 - a cast: the records say what happened
            self.records.mark_migration(done.migration, Status.ERROR, exc)
            if done.migrate_data is not None:
                self.abort_target(ctx, instance, done.migrate_data)
            if not isinstance(exc, Conflict):
                self.records.fail_flow(ctx, instance, exc, restore,
                                       {"old_flavor": None, "new_flavor": None})
            return
        migration, migrate_data = done.migration, done.migrate_data
        assert migration is not None and migrate_data is not None
        current = self.db.migration_get(int(migration.id or 0))
        if current.status != Status.PRE_MIGRATING:
            # settled meanwhile (a restart of the source recovered it): its clean-up
            # of this host may have run before the target existed
            LOG.warning("prep_resize of %s: migration %s is %s; undoing the target",
                        instance.uuid, migration.id, current.status)
            self.abort_target(ctx, instance, migrate_data)
            return
        try:
            self.compute_rpc.resize_instance(ctx, migration.source_host, instance,
                                             migration, flavor, migrate_data)
        except Exception as exc:  # noqa: BLE001 - nothing moved yet: undo and restore
            self.records.mark_migration(migration, Status.ERROR, exc)
            self.abort_target(ctx, instance, migrate_data)
            self.records.fail_flow(ctx, instance, exc, restore,
                                   {"old_flavor": None, "new_flavor": None}, rollback=True)

    def _prep_resize(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                     migration_type: MigrationType, done: PrepResizeProgress) -> None:
        """Claim, record and prepare the target; ``done`` tracks what exists so far."""
        caps = self.driver.capabilities
        if instance.task_state != TaskState.RESIZE_PREP:
            raise Conflict(f"instance {instance.uuid} is {instance.task_state!r}, "
                           "not resize_prep: another request owns it")
        if instance.host == self.host and not caps.supports_migrate_to_same_host:
            raise RescheduledError(
                f"driver {self.driver.name!r} on {self.host!r} cannot migrate an "
                "instance to its own host")
        if migration_type == MigrationType.RESIZE and not caps.supports_resize:
            raise NotSupported(self.driver.name, "resize")
        if not caps.supports_cold_migration:
            raise NotSupported(self.driver.name, "cold migration")
        with self.claims.lock():
            self.claims.claim(instance, flavor, f"{migration_type} of {instance.uuid}")
            migration = self.db.migration_create(Migration(
                instance_uuid=instance.uuid, source_host=str(instance.host),
                migration_type=migration_type, dest_host=self.host,
                source_node=instance.node, dest_node=self.host,
                status=Status.PRE_MIGRATING, old_flavor=instance.flavor, new_flavor=flavor))
        done.migration = migration
        sysmeta = dict(instance.system_metadata, old_vm_state=str(instance.vm_state))
        instance = self.db.instance_update(
            instance.uuid, {"old_flavor": instance.flavor, "new_flavor": flavor,
                            "system_metadata": sysmeta},
            expected_task_state=TaskState.RESIZE_PREP)
        self.records.notify(ctx, "resize.prep.start", instance, migration_id=migration.id)
        done.migrate_data = self.driver.prepare_migrate_disk_target(
            ctx, migration, instance, flavor)
        self.records.notify(ctx, "resize.prep.end", instance, migration_id=migration.id)

    def abort_target(self, ctx: RequestContext, instance: Instance,
                     migrate_data: ColdMigrateData | None) -> None:
        """Destination (also from recovery): undo ``prepare_migrate_disk_target``,
        best effort (a failure is logged)."""
        try:
            self.driver.abort_migrate_disk_target(ctx, instance,
                                                  migrate_data or ColdMigrateData())
        except Exception:  # cleanup is best effort; logged
            LOG.exception("abort_migrate_disk_target of %s failed on %s", instance.uuid,
                          self.host)

    def abort_resize_target(self, ctx: RequestContext, instance: Instance,
                            migration: Migration, migrate_data: ColdMigrateData | None,
                            destroy: bool) -> None:
        """Destination, called by the source after a failed transfer (or by
        recovery): undo ``prepare_migrate_disk_target`` and, if ``destroy`` and this
        is not the instance's own host, remove any partial copy here."""
        instance = self.db.instance_get(instance.uuid)
        self.abort_target(ctx, instance, migrate_data)
        if destroy and instance.host != self.host:
            self.driver.destroy(ctx, instance, network.network_info(instance),
                                destroy_disks=True)

    # -- source: resize_instance ----------------------------------------------------------

    def resize_instance(self, ctx: RequestContext, instance: Instance,
                        migration: Migration, flavor: Flavor,
                        migrate_data: ColdMigrateData) -> None:
        """Source, cast by the destination's prep_resize: power off and send the
        disks (``migrate_disk_and_power_off``, progress into the migration record),
        then cast ``finish_resize`` to the destination."""
        instance = self.db.instance_get(instance.uuid)
        restore = instance.vm_state
        reached_driver = False
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid,
                                        "compute_resize_instance", self.host):
                migration = self.db.migration_update(
                    int(migration.id or 0), {"status": Status.MIGRATING},
                    expected_status=Status.PRE_MIGRATING)
                instance = self.db.instance_update(
                    instance.uuid, {"task_state": TaskState.RESIZE_MIGRATING},
                    expected_task_state=TaskState.RESIZE_PREP)
                self.records.notify(ctx, "resize.start", instance, migration_id=migration.id)
                reached_driver = True
                disk_info = self.driver.migrate_disk_and_power_off(
                    ctx, instance, str(migration.dest_host), flavor,
                    network.network_info(instance),
                    self.conf.compute.shutdown_timeout,
                    self.conf.compute.shutdown_retry_interval, migrate_data,
                    progress=self.records.transfer_progress(int(migration.id or 0),
                                                             self.stopped))
                if self.stopped.is_set():
                    return  # the service "crashed" meanwhile: recovery owns the flow
                migration = self.db.migration_update(
                    int(migration.id or 0), {"status": Status.POST_MIGRATING},
                    expected_status=Status.MIGRATING)
                instance = self.db.instance_update(
                    instance.uuid, {"task_state": TaskState.RESIZE_MIGRATED,
                                    "power_state": PowerState.SHUTDOWN},
                    expected_task_state=TaskState.RESIZE_MIGRATING)
                self.records.notify(ctx, "resize.end", instance, migration_id=migration.id)
        except Exception as exc:  # noqa: BLE001 - a cast: handled and recorded
            if self.stopped.is_set():
                return
            self._resize_failed_at_source(ctx, instance, migration, migrate_data, exc,
                                          restore, reached_driver)
            return
        try:
            self.compute_rpc.finish_resize(ctx, str(migration.dest_host), instance,
                                           migration, disk_info, migrate_data)
        except Exception as exc:  # noqa: BLE001 - the kept copy here is authoritative
            self._resize_failed_at_source(ctx, instance, migration, migrate_data, exc,
                                          restore, reached_driver=True)

    def _resize_failed_at_source(self, ctx: RequestContext, instance: Instance,
                                 migration: Migration, migrate_data: ColdMigrateData,
                                 exc: BaseException, restore: VMState,
                                 reached_driver: bool) -> None:
        if isinstance(exc, Conflict) and not reached_driver:
            LOG.warning("resize_instance of %s skipped: %s", instance.uuid, exc)
            return  # recovery or another request already settled this migration
        self.records.mark_migration(migration, Status.ERROR, exc)
        try:
            self.compute_rpc.abort_resize_target(ctx, str(migration.dest_host), instance,
                                                 migration, migrate_data, destroy=True)
        except Exception:  # the destination may be down; logged
            LOG.exception("could not clean destination %s of %s", migration.dest_host,
                          instance.uuid)
        if reached_driver:
            try:
                self.driver.finish_revert_migration(
                    ctx, migration, instance, network.network_info(instance),
                    power_on=restore == VMState.ACTIVE)
            except Exception as exc2:
                LOG.exception("could not restore %s on its source", instance.uuid)
                exc = exc2
        self.records.fail_flow(ctx, instance, exc, restore, {
            "old_flavor": None, "new_flavor": None,
            "power_state": PowerState.RUNNING if restore == VMState.ACTIVE
            else PowerState.SHUTDOWN})

    # -- destination: finish_resize -------------------------------------------------------

    def finish_resize(self, ctx: RequestContext, instance: Instance, migration: Migration,
                      disk_info: list[DiskInfo],
                      migrate_data: ColdMigrateData | None = None) -> None:
        """Destination, cast by the source: build the instance from the received
        disks (``finish_migration``); vm_state RESIZED, migration 'finished'."""
        instance = self.db.instance_get(instance.uuid)
        migration = self.db.migration_get(int(migration.id or 0))
        restore = old_vm_state(instance)
        reached_driver = False
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid, "compute_finish_resize",
                                        self.host):
                new, old = migration.new_flavor or instance.flavor, migration.old_flavor
                instance = self.db.instance_update(
                    instance.uuid, {"host": self.host, "node": self.host, "flavor": new,
                                    "task_state": TaskState.RESIZE_FINISH},
                    expected_task_state=TaskState.RESIZE_MIGRATED)
                self.records.notify(ctx, "resize.finish.start", instance,
                                    migration_id=migration.id)
                power_on = restore == VMState.ACTIVE
                reached_driver = True
                self.driver.finish_migration(
                    ctx, migration, instance, disk_info, network.network_info(instance),
                    instance.image or ImageMeta(id="none"), resize_instance=new != old,
                    power_on=power_on)
                self.db.migration_update(int(migration.id or 0),
                                         {"status": Status.FINISHED, "progress": 100},
                                         expected_status=Status.POST_MIGRATING)
                instance = self.db.instance_update(
                    instance.uuid, {"vm_state": VMState.RESIZED, "task_state": None,
                                    "power_state": PowerState.RUNNING if power_on
                                    else PowerState.SHUTDOWN},
                    expected_task_state=TaskState.RESIZE_FINISH)
                self.records.notify(ctx, "resize.finish.end", instance, migration_id=migration.id)
        except Exception as exc:  # noqa: BLE001 - a cast: handled and recorded
            if isinstance(exc, Conflict) and not reached_driver:
                LOG.warning("finish_resize of %s skipped: %s", instance.uuid, exc)
                return
            self.finish_resize_failed(ctx, instance, migration, migrate_data, exc)
            return
        actions.finish_action(self.db, ctx, instance.uuid)

    def finish_resize_failed(self, ctx: RequestContext, instance: Instance,
                             migration: Migration, migrate_data: ColdMigrateData | None,
                             exc: BaseException) -> None:
        """Destination, after ``finish_resize`` failed (or from recovery): the source
        still holds its kept copy; clean here and have the source restore it."""
        self.records.mark_migration(migration, Status.ERROR, exc)
        if migration.source_host != self.host:
            try:
                self.driver.destroy(ctx, instance, network.network_info(instance),
                                    destroy_disks=True)
            except Exception:  # logged; the source copy is intact
                LOG.exception("could not remove partial %s from %s", instance.uuid,
                              self.host)
            self.abort_target(ctx, instance, migrate_data)
        self.db.instance_update(instance.uuid, {
            "host": migration.source_host, "node": migration.source_node,
            "flavor": migration.old_flavor or instance.flavor})
        try:
            self.compute_rpc.restore_resize_source(
                ctx, migration.source_host, instance, migration, actions.describe(exc),
                isinstance(exc, actions.ROLLBACK_ERRORS))
        except Exception as exc2:  # noqa: BLE001 - the source keeps the copy; ERROR
            self.records.fail_flow(ctx, instance, exc2, VMState.ERROR)

    def restore_resize_source(self, ctx: RequestContext, instance: Instance,
                              migration: Migration, reason: str, rollback: bool) -> None:
        """Source, cast by a destination whose finish_resize failed: start the kept
        copy again (``finish_revert_migration``).  vm_state: the one before the resize
        when ``rollback``, else ERROR (the data is intact here either way)."""
        instance = self.db.instance_get(instance.uuid)
        old = old_vm_state(instance)
        final = old if rollback else VMState.ERROR
        try:
            self.driver.finish_revert_migration(ctx, migration, instance,
                                                network.network_info(instance),
                                                power_on=old == VMState.ACTIVE)
        except Exception as exc:
            LOG.exception("could not restore %s on %s", instance.uuid, self.host)
            final, reason = VMState.ERROR, f"{reason}; restore: {actions.describe(exc)}"
        self.db.instance_update(instance.uuid, {
            "host": self.host, "node": migration.source_node,
            "flavor": migration.old_flavor or instance.flavor, "old_flavor": None,
            "new_flavor": None, "vm_state": final, "task_state": None,
            "power_state": PowerState.RUNNING if old == VMState.ACTIVE
            else PowerState.SHUTDOWN})
        actions.finish_action(self.db, ctx, instance.uuid, reason)
