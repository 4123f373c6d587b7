"""The compute manager: one per host, the RPC endpoint of topic ``compute``.

Who calls it: the conductor and other hosts' managers over RPC (server = this host),
and :class:`virtsdk.compute.service.ComputeService` (``init_host`` at start,
``update_available_resource`` on every heartbeat).  It owns this host's driver, which
it loads by entry-point name; it never imports a driver.

Every public method here is an RPC method.  The migration flows are objects built
here with explicit, typed dependencies (the fenced database, driver and RPC clients,
:class:`~.flow_records.FlowRecords`, ...): :class:`~.cold_migration.ColdMigrationFlow`,
:class:`~.confirm_revert.ConfirmRevertFlow`, :class:`~.live_migration.LiveMigrationFlow`
and :class:`~.live_migration_dest.LiveMigrationDestination`.  The RPC methods of the
flows only forward to them here, keeping the names and signatures rolling upgrades
pin.  Start-up recovery (:class:`~.recovery.Recovery`, given the flow objects whose
steps it runs again) and the reconcile task (:class:`~.reconcile.Reconciler`) are
built here the same way.  This module holds the instance lifecycle.  Each flow keeps
the vm_state / task_state / migration-status machine of docs/flows.md ("States") and
ends by clearing the task state *after* the migration record reached its final
status, so "task_state is None" means "this flow is over" to any observer.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import oslo_messaging
from oslo_config import cfg

from virtsdk import actions, network
from virtsdk.compute.claims import HostClaims
from virtsdk.compute.cold_migration import ColdMigrationFlow, ConductorClient
from virtsdk.compute.confirm_revert import ConfirmRevertFlow
from virtsdk.compute.fence import Fence
from virtsdk.compute.flow_records import FlowRecords
from virtsdk.compute.live_migration import LiveMigrationFlow
from virtsdk.compute.live_migration_dest import LiveMigrationDestination
from virtsdk.compute.reconcile import Reconciler
from virtsdk.compute.recovery import Recovery
from virtsdk.compute.rpcapi import VERSIONS as COMPUTE_RPC_VERSIONS
from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import InstanceNotFound
from virtsdk.notifications import Notifier
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    ImageMeta,
    Instance,
    LiveMigrateData,
    Migration,
)
from virtsdk.services import COMPUTE
from virtsdk.states import PowerState, TaskState, VMState

LOG = logging.getLogger(__name__)


class ComputeManager:
    """Manages the instances of one host through its driver (see the module doc)."""

    #: answers every compute RPC API version up to the current one (rpcapi.VERSIONS)
    target = oslo_messaging.Target(version=COMPUTE_RPC_VERSIONS.current)

    def __init__(self, conf: cfg.ConfigOpts, host: str, db: Database,
                 driver: ComputeDriver, conductor: ConductorClient) -> None:
        self.conf = conf
        self.host = host
        #: every record write, driver call and RPC of this incarnation passes the
        #: fence: once the service stopped, a thread left behind can change nothing
        self.fence = Fence(f"compute {host}")
        self._real_driver = driver
        self.db = self.fence.guard(db, serialize=True)
        self.driver = self.fence.guard(driver)
        self.compute_rpc = self.fence.guard(ComputeAPI(conf))
        self.conductor_rpc = self.fence.guard(conductor)
        self.notifier = Notifier(conf, "compute", host)
        #: set when the service stops: late callbacks of a "crashed" manager do nothing
        self.stopped = threading.Event()
        self.records = FlowRecords(host, self.db, self.notifier)
        self.cold = ColdMigrationFlow(
            conf, host, self.db, self.driver, self.compute_rpc, self.conductor_rpc,
            self.records, HostClaims(conf, host, self.db, self.driver), self.stopped)
        self.confirm_revert = ConfirmRevertFlow(host, self.db, self.driver,
                                                self.compute_rpc, self.records)
        self.live = LiveMigrationFlow(conf, host, self.db, self.driver, self.compute_rpc,
                                      self.records, self.stopped)
        self.live_dest = LiveMigrationDestination(host, self.db, self.driver,
                                                  self.compute_rpc, self.records)
        self.reconciler = Reconciler(host, self.db, self.driver,
                                     conf.compute.reconcile_grace)
        self.recovery = Recovery(host, self.db, self.driver, self.compute_rpc,
                                 terminate=self.terminate_instance, cold=self.cold,
                                 confirm_revert=self.confirm_revert, live=self.live)

    # -- service hooks (not RPC: called by ComputeService) --------------------------------

    def _start(self) -> None:
        """Called once by the service before it serves RPC: driver init, resource
        report, then recovery of what a crash interrupted."""
        self.driver.init_host(self.host)
        self._report_resources()
        self.recovery.recover_interrupted(RequestContext(request_id="req-init-host"))

    def _stop(self) -> None:
        self.stopped.set()
        self.fence.close()
        try:
            self._real_driver.cleanup_host(self.host)
        except Exception:  # shutting down anyway
            LOG.exception("driver cleanup_host failed on %s", self.host)

    def _report_resources(self) -> None:
        """Heartbeat with the capacity the driver reports now."""
        res = self.driver.get_available_resource(self.host)
        self.db.service_heartbeat(self.host, COMPUTE, resources=res.to_primitive())

    # -- RPC: instance lifecycle ----------------------------------------------------------

    def build_and_run_instance(self, ctx: RequestContext, instance: Instance) -> None:
        """Cast by the conductor to the chosen host: spawn the instance.  On success
        vm_state ACTIVE; on failure vm_state ERROR and the driver left nothing."""
        instance = self.db.instance_get(instance.uuid)
        try:
            with actions.event_reporter(self.db, ctx, instance.uuid,
                                        "compute_build_and_run_instance", self.host):
                instance = self.db.instance_update(
                    instance.uuid, {"task_state": TaskState.SPAWNING},
                    expected_task_state=None)
                self.records.notify(ctx, "instance.create.start", instance)
                self.driver.spawn(ctx, instance, instance.image or ImageMeta(id="none"),
                                  network.network_info(instance))
                self.db.instance_update(
                    instance.uuid, {"vm_state": VMState.ACTIVE, "task_state": None,
                                    "power_state": PowerState.RUNNING},
                    expected_task_state=TaskState.SPAWNING)
                self.records.notify(ctx, "instance.create.end", instance)
        except Exception as exc:  # noqa: BLE001 - a cast: record, do not raise
            LOG.warning("build of %s on %s failed: %s", instance.uuid, self.host, exc)
            try:
                self.db.instance_update(instance.uuid, {"vm_state": VMState.ERROR,
                                                        "task_state": None})
            except InstanceNotFound:
                pass
        actions.finish_action(self.db, ctx, instance.uuid)

    def terminate_instance(self, ctx: RequestContext, instance: Instance) -> None:
        """Called by the API on the instance's host: destroy it with its disks and
        mark it deleted.  Raises what the driver raised (the instance then stays, in
        ERROR, so nothing is lost silently)."""
        instance = self.db.instance_get(instance.uuid)
        with actions.event_reporter(self.db, ctx, instance.uuid, "compute_terminate_instance",
                                    self.host):
            try:
                self.driver.destroy(ctx, instance, network.network_info(instance),
                                    destroy_disks=True)
            except Exception as exc:
                actions.finish_action(self.db, ctx, instance.uuid, actions.describe(exc))
                self.db.instance_update(instance.uuid, {"vm_state": VMState.ERROR,
                                                        "task_state": None})
                raise
            self.db.instance_destroy(instance.uuid)
        self.records.notify(ctx, "instance.delete.end", instance)
        actions.finish_action(self.db, ctx, instance.uuid)

    def instance_power_state(self, ctx: RequestContext, instance: Instance) -> int | None:
        """Called over RPC (recovery, checks): the power state the driver reports for
        the instance here, or None if this host does not have it."""
        try:
            return int(self.driver.get_info(instance).state)
        except InstanceNotFound:
            return None

    # -- RPC: audit (virtsdk audit) -------------------------------------------------------

    def audit_host(self, ctx: RequestContext) -> dict[str, Any]:
        """RPC call from ``virtsdk audit``: what this hypervisor holds per instance
        (None if the driver cannot list) and its resource use."""
        return self.reconciler.holdings()

    def audit_fix(self, ctx: RequestContext,
                  differences: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """RPC call from ``virtsdk audit --fix``: remove the given safely orphaned
        holdings that are still orphaned now; returns the ones removed."""
        return self.reconciler.fix(ctx, differences)

    # -- RPC: cold migration / resize (ColdMigrationFlow, ConfirmRevertFlow) --------------

    def prep_resize(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                    alternates: list[str], migration_type: str) -> None:
        """Destination, cast by the conductor: :meth:`ColdMigrationFlow.prep_resize`."""
        self.cold.prep_resize(ctx, instance, flavor, alternates, migration_type)

    def abort_resize_target(self, ctx: RequestContext, instance: Instance,
                            migration: Migration, migrate_data: ColdMigrateData | None,
                            destroy: bool) -> None:
        """Destination, called by the source or recovery:
        :meth:`ColdMigrationFlow.abort_resize_target`."""
        self.cold.abort_resize_target(ctx, instance, migration, migrate_data, destroy)

    def resize_instance(self, ctx: RequestContext, instance: Instance,
                        migration: Migration, flavor: Flavor,
                        migrate_data: ColdMigrateData) -> None:
        """Source, cast by the destination: :meth:`ColdMigrationFlow.resize_instance`."""
        self.cold.resize_instance(ctx, instance, migration, flavor, migrate_data)

    def finish_resize(self, ctx: RequestContext, instance: Instance, migration: Migration,
                      disk_info: list[DiskInfo],
                      migrate_data: ColdMigrateData | None = None) -> None:
        """Destination, cast by the source: :meth:`ColdMigrationFlow.finish_resize`."""
        self.cold.finish_resize(ctx, instance, migration, disk_info, migrate_data)

    def restore_resize_source(self, ctx: RequestContext, instance: Instance,
                              migration: Migration, reason: str, rollback: bool) -> None:
        """Source, cast by the destination:
        :meth:`ColdMigrationFlow.restore_resize_source`."""
        self.cold.restore_resize_source(ctx, instance, migration, reason, rollback)

    def confirm_resize(self, ctx: RequestContext, instance: Instance,
                       migration: Migration) -> None:
        """Source, cast by the API: :meth:`ConfirmRevertFlow.confirm_resize`."""
        self.confirm_revert.confirm_resize(ctx, instance, migration)

    def revert_resize(self, ctx: RequestContext, instance: Instance,
                      migration: Migration) -> None:
        """Destination, cast by the API: :meth:`ConfirmRevertFlow.revert_resize`."""
        self.confirm_revert.revert_resize(ctx, instance, migration)

    def finish_revert_resize(self, ctx: RequestContext, instance: Instance,
                             migration: Migration) -> None:
        """Source, cast by the destination:
        :meth:`ConfirmRevertFlow.finish_revert_resize`."""
        self.confirm_revert.finish_revert_resize(ctx, instance, migration)

    # -- RPC: live migration (LiveMigrationDestination, LiveMigrationFlow) ----------------

    def check_can_live_migrate_destination(
        self, ctx: RequestContext, instance: Instance, block_migration: bool | None,
        disk_over_commit: bool,
    ) -> LiveMigrateData:
        """Destination, call from the conductor:
        :meth:`LiveMigrationDestination.check_can_live_migrate_destination`."""
        return self.live_dest.check_can_live_migrate_destination(
            ctx, instance, block_migration, disk_over_commit)

    def check_can_live_migrate_source(self, ctx: RequestContext, instance: Instance,
                                      dest_check_data: LiveMigrateData) -> LiveMigrateData:
        """Source, call from the destination:
        :meth:`LiveMigrationDestination.check_can_live_migrate_source`."""
        return self.live_dest.check_can_live_migrate_source(ctx, instance, dest_check_data)

    def pre_live_migration(self, ctx: RequestContext, instance: Instance,
                           block_migration: bool, disk_info: list[DiskInfo] | None,
                           migrate_data: LiveMigrateData,
                           migration: Migration) -> LiveMigrateData:
        """Destination, call from the source:
        :meth:`LiveMigrationDestination.pre_live_migration`."""
        return self.live_dest.pre_live_migration(ctx, instance, block_migration,
                                                 disk_info, migrate_data, migration)

    def post_live_migration_at_destination(self, ctx: RequestContext, instance: Instance,
                                           block_migration: bool,
                                           migration: Migration) -> None:
        """Destination, call from the source:
        :meth:`LiveMigrationDestination.post_live_migration_at_destination`."""
        self.live_dest.post_live_migration_at_destination(ctx, instance, block_migration,
                                                          migration)

    def rollback_live_migration_at_destination(
        self, ctx: RequestContext, instance: Instance, destroy_disks: bool,
        migrate_data: LiveMigrateData | None, migration: Migration,
    ) -> None:
        """Destination, call from the source:
        :meth:`LiveMigrationDestination.rollback_live_migration_at_destination`."""
        self.live_dest.rollback_live_migration_at_destination(
            ctx, instance, destroy_disks, migrate_data, migration)

    def live_migration(self, ctx: RequestContext, instance: Instance, dest: str,
                       block_migration: bool | None, migration: Migration,
                       migrate_data: LiveMigrateData) -> None:
        """Source, cast by the conductor: :meth:`LiveMigrationFlow.live_migration`."""
        self.live.live_migration(ctx, instance, dest, block_migration, migration,
                                 migrate_data)

    def live_migration_abort(self, ctx: RequestContext, instance: Instance,
                             migration_id: int) -> None:
        """Source, call from the API: :meth:`LiveMigrationFlow.live_migration_abort`."""
        self.live.live_migration_abort(ctx, instance, migration_id)

    def live_migration_force_complete(self, ctx: RequestContext, instance: Instance,
                                      migration_id: int) -> None:
        """Source, call from the API:
        :meth:`LiveMigrationFlow.live_migration_force_complete`."""
        self.live.live_migration_force_complete(ctx, instance, migration_id)
