"""The live-migration steps a compute host runs as the destination, and the
pre-checks the destination leads (flow and statuses: docs/flows.md).

``check_can_live_migrate_destination`` (a call from the conductor) runs the driver's
destination check here, then asks the source's ``check_can_live_migrate_source``
over RPC, which the source answers with the same class.  ``pre_live_migration``,
``post_live_migration_at_destination`` and ``rollback_live_migration_at_destination``
are calls from the source's :class:`~.live_migration.LiveMigrationFlow`.
"""

from __future__ import annotations

from virtsdk import actions, network
from virtsdk.compute.flow_records import FlowRecords
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import MigrationError
from virtsdk.objects import DiskInfo, HostResources, Instance, LiveMigrateData, Migration
from virtsdk.states import MigrationStatus, PowerState, TaskState

Status = MigrationStatus


class LiveMigrationDestination:
    """The destination's live-migration steps and the pre-checks of one compute host.
    Explicit dependencies: this host's name, the manager's (fenced) database, driver
    and RPC client, and its :class:`~.flow_records.FlowRecords`."""

    def __init__(self, host: str, db: Database, driver: ComputeDriver,
                 compute_rpc: ComputeAPI, records: FlowRecords) -> None:
        self.host = host
        self.db = db
        self.driver = driver
        self.compute_rpc = compute_rpc
        self.records = records

    def check_can_live_migrate_destination(
        self, ctx: RequestContext, instance: Instance, block_migration: bool | None,
        disk_over_commit: bool,
    ) -> LiveMigrateData:
        """Destination, RPC call from the conductor: the driver's destination check,
        then the source's check over RPC; the destination check's leftovers are
        always cleaned.  Raises MigrationPreCheckError (or NotSupported) to refuse."""
        instance = self.db.instance_get(instance.uuid)
        svc = self.db.service_get(str(instance.host))
        src = svc.resources if svc is not None and svc.resources is not None else \
            HostResources(hostname=str(instance.host), vcpus=0, memory_mb=0, local_gb=0)
        dst = self.driver.get_available_resource(self.host)
        data = self.driver.check_can_live_migrate_destination(
            ctx, instance, src, dst, block_migration, disk_over_commit)
        try:
            return self.compute_rpc.check_can_live_migrate_source(
                ctx, str(instance.host), instance, data)
        finally:
            self.driver.cleanup_live_migration_destination_check(ctx, data)

    def check_can_live_migrate_source(self, ctx: RequestContext, instance: Instance,
                                      dest_check_data: LiveMigrateData) -> LiveMigrateData:
        """Source, RPC call from the destination's check: the driver's source check."""
        return self.driver.check_can_live_migrate_source(
            ctx, self.db.instance_get(instance.uuid), dest_check_data)

    # -- destination side -------------------------------------------------------------------

    def pre_live_migration(self, ctx: RequestContext, instance: Instance,
                           block_migration: bool, disk_info: list[DiskInfo] | None,
                           migrate_data: LiveMigrateData,
                           migration: Migration) -> LiveMigrateData:
        """Destination, RPC call from the source: the driver prepares this host and
        returns ``migrate_data`` completed (listen addresses...).  Notifications
        ``live_migration.pre.start`` / ``.end``."""
        instance = self.db.instance_get(instance.uuid)
        with actions.event_reporter(self.db, ctx, instance.uuid, "compute_pre_live_migration",
                                    self.host):
            self.records.notify(ctx, "live_migration.pre.start", instance,
                                migration_id=migration.id)
            data = self.driver.pre_live_migration(ctx, instance,
                                                  network.network_info(instance), disk_info,
                                                  migrate_data)
            current = self.db.migration_get(int(migration.id or 0))
            if current.status != Status.PREPARING:
                # the source gave up meanwhile (crash + recovery, abort): its rollback
                # may have run before this placeholder existed, so remove it here
                self.driver.rollback_live_migration_at_destination(
                    ctx, instance, network.network_info(instance), True, data)
                raise MigrationError(f"migration {migration.id} is {current.status}, no "
                                     "longer preparing: placeholder removed")
            self.records.notify(ctx, "live_migration.pre.end", instance, migration_id=migration.id)
        return data

    def post_live_migration_at_destination(self, ctx: RequestContext, instance: Instance,
                                           block_migration: bool,
                                           migration: Migration) -> None:
        """Destination, RPC call from the source once the guest runs here: the
        instance record moves to this host first, then the driver finishes."""
        instance = self.db.instance_get(instance.uuid)
        with actions.event_reporter(self.db, ctx, instance.uuid,
                                    "compute_post_live_migration_at_destination", self.host):
            self.records.notify(ctx, "live_migration.post.dest.start", instance,
                                migration_id=migration.id)
            instance = self.db.instance_update(
                instance.uuid, {"host": self.host, "node": self.host,
                                "power_state": PowerState.RUNNING},
                expected_task_state=TaskState.MIGRATING)
            self.driver.post_live_migration_at_destination(
                ctx, instance, network.network_info(instance), block_migration)
            self.records.notify(ctx, "live_migration.post.dest.end", instance,
                                migration_id=migration.id)

    def rollback_live_migration_at_destination(
        self, ctx: RequestContext, instance: Instance, destroy_disks: bool,
        migrate_data: LiveMigrateData | None, migration: Migration,
    ) -> None:
        """Destination, RPC call from the source after a failure: remove what
        pre_live_migration created here."""
        instance = self.db.instance_get(instance.uuid)
        with actions.event_reporter(self.db, ctx, instance.uuid,
                                    "compute_rollback_live_migration_at_destination",
                                    self.host):
            self.driver.rollback_live_migration_at_destination(
                ctx, instance, network.network_info(instance), destroy_disks,
                migrate_data)
            self.records.notify(ctx, "live_migration.rollback.dest.end", instance,
                                migration_id=migration.id)
