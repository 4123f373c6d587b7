"""Confirming or reverting a finished cold migration / resize (docs/flows.md).

RPC methods, all casts, each running on the host named in its docstring::

    source confirm_resize         confirm_migration; migration confirmed
    dest   revert_resize          destroy here, then source finish_revert_resize
    source finish_revert_resize   finish_revert_migration; migration reverted

A failure marks the migration 'error' and errors the instance out: RESIZED is kept
after a rollback-class error (nothing was touched), ERROR otherwise.
"""

from __future__ import annotations

from virtsdk import actions, network
from virtsdk.compute.flow_records import FlowRecords, old_vm_state
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.objects import Instance, Migration
from virtsdk.states import MigrationStatus, PowerState, TaskState, VMState

Status = MigrationStatus


class ConfirmRevertFlow:
    """The confirm / revert steps of one compute host.  Explicit dependencies: this
    host's name, the manager's (fenced) database, driver and RPC client, and its
    :class:`~.flow_records.FlowRecords`."""

    def __init__(self, host: str, db: Database, driver: ComputeDriver,
                 compute_rpc: ComputeAPI, records: FlowRecords) -> None:
        self.host = host
        self.db = db
        self.driver = driver
        self.compute_rpc = compute_rpc
        self.records = records

    def confirm_resize(self, ctx: RequestContext, instance: Instance,
                       migration: Migration) -> None:
        """Source, cast by the API: delete the kept copy (``confirm_migration``);
        migration 'confirmed', vm_state back to ACTIVE/STOPPED."""
        instance = self.db.instance_get(instance.uuid)
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid, "compute_confirm_resize",
                                        self.host):
                self.records.notify(ctx, "resize.confirm.start", instance,
                                    migration_id=migration.id)
                self.driver.confirm_migration(ctx, migration, instance,
                                              network.network_info(instance))
                self.db.migration_update(int(migration.id or 0),
                                         {"status": Status.CONFIRMED},
                                         expected_status=Status.CONFIRMING)
                instance = self.db.instance_update(
                    instance.uuid, {"vm_state": old_vm_state(instance),
                                    "task_state": None, "old_flavor": None,
                                    "new_flavor": None},
                    expected_task_state=TaskState.RESIZE_CONFIRMING)
                self.records.notify(ctx, "resize.confirm.end", instance, migration_id=migration.id)
        except Exception as exc:  # noqa: BLE001 - a cast: handled and recorded
            self.records.mark_migration(migration, Status.ERROR, exc)
            self.records.fail_flow(ctx, instance, exc, VMState.RESIZED)
            return
        actions.finish_action(self.db, ctx, instance.uuid)

    def revert_resize(self, ctx: RequestContext, instance: Instance,
                      migration: Migration) -> None:
        """Destination, cast by the API: destroy the resized instance here, then cast
        ``finish_revert_resize`` to the source."""
        instance = self.db.instance_get(instance.uuid)
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid, "compute_revert_resize",
                                        self.host):
                self.records.notify(ctx, "resize.revert.start", instance,
                                    migration_id=migration.id)
                if migration.source_host != self.host:
                    self.driver.destroy(ctx, instance, network.network_info(instance),
                                        destroy_disks=True)
        except Exception as exc:  # noqa: BLE001 - a cast: handled and recorded
            self.records.mark_migration(migration, Status.ERROR, exc)
            self.records.fail_flow(ctx, instance, exc, VMState.RESIZED)
            return
        try:
            self.compute_rpc.finish_revert_resize(ctx, migration.source_host, instance,
                                                  migration)
        except Exception as exc:  # noqa: BLE001 - the source keeps its copy; ERROR
            self.records.mark_migration(migration, Status.ERROR, exc)
            self.records.fail_flow(ctx, instance, exc, VMState.ERROR,
                                   {"host": migration.source_host, "node": migration.source_node})

    def finish_revert_resize(self, ctx: RequestContext, instance: Instance,
                             migration: Migration) -> None:
        """Source, cast by the destination's revert_resize: restore the kept copy
        (``finish_revert_migration``); migration 'reverted', old vm_state back."""
        instance = self.db.instance_get(instance.uuid)
        old = old_vm_state(instance)
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid,
                                        "compute_finish_revert_resize", self.host):
                instance = self.db.instance_update(
                    instance.uuid, {"host": self.host, "node": migration.source_node,
                                    "flavor": migration.old_flavor or instance.flavor},
                    expected_task_state=TaskState.RESIZE_REVERTING)
                self.driver.finish_revert_migration(
                    ctx, migration, instance, network.network_info(instance),
                    power_on=old == VMState.ACTIVE)
                self.db.migration_update(int(migration.id or 0), {"status": Status.REVERTED},
                                         expected_status=Status.REVERTING)
                instance = self.db.instance_update(
                    instance.uuid, {"vm_state": old, "task_state": None,
                                    "old_flavor": None, "new_flavor": None,
                                    "power_state": PowerState.RUNNING
                                    if old == VMState.ACTIVE else PowerState.SHUTDOWN},
                    expected_task_state=TaskState.RESIZE_REVERTING)
                self.records.notify(ctx, "resize.revert.end", instance, migration_id=migration.id)
        except Exception as exc:  # noqa: BLE001 - a cast: handled and recorded
            self.records.mark_migration(migration, Status.ERROR, exc)
            self.records.fail_flow(ctx, instance, exc, VMState.RESIZED)
            return
        actions.finish_action(self.db, ctx, instance.uuid)
