"""Client side of the compute RPC API (topic ``compute``, one server per host).

Called by the API, the conductor and compute managers of other hosts.  Casts return
at once; calls wait for the remote manager and re-raise its virtsdk error as the same
class.  Which hops are calls and which are casts follows Nova (docs/flows.md): the
cold-migration chain is casts, ``pre_live_migration`` and the live-migration checks
are calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.objects import ColdMigrateData, DiskInfo, Flavor, Instance, LiveMigrateData, Migration

TOPIC = "compute"

#: The compute RPC API's versions and the object versions each one's receivers know.
#: 1.0 - the first versioned release
#: 1.1 - Migration 1.1 (created_at / updated_at) in arguments
#: 1.2 - audit_host, audit_fix (``virtsdk audit``)
VERSIONS = rpc.RPCAPIVersions({"1.0": {"Migration": "1.0"}, "1.1": {}, "1.2": {}},
                              "compute")


class ComputeAPI:
    """One method per remote compute-manager method; ``host`` picks the server."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        #: sends at ``[upgrade_levels] compute`` (default: the current version), objects
        #: backported to what compute services of that version understand
        #: re-sent through a broker outage of bounded length (virtsdk.rpc.delivery)
        self._client = rpc.reliable(conf, VERSIONS.client(conf, TOPIC,
                                                          timeout=conf.api.rpc_call_timeout))
        #: Tests and demos only: ``hook(method, host)`` runs before each message
        #: leaves; what it raises is what the sender sees (a lost message).
        self.fault_hook: Callable[[str, str], None] | None = None

    def _cast(self, ctx: RequestContext, host: str, method: str, **kw: Any) -> None:
        if self.fault_hook is not None:
            self.fault_hook(method, host)
        self._client.cast(ctx, method, server=host, **kw)

    def _call(self, ctx: RequestContext, host: str, method: str, *,
              since: str | None = None, idempotent: bool = False, **kw: Any) -> Any:
        """Call ``method`` on ``host``; ``since`` is the first RPC API version that has
        it (a cap below that raises oslo.messaging's ``RPCVersionCapError``).
        ``idempotent``: running it twice does what running it once does, so it is sent
        again if the request or its reply was lost (``[DEFAULT] rpc_delivery_window``)."""
        if self.fault_hook is not None:
            self.fault_hook(method, host)
        return self._client.call(ctx, method, server=host, version=since,
                                 idempotent=idempotent, **kw)

    # -- lifecycle ------------------------------------------------------------------------

    def build_and_run_instance(self, ctx: RequestContext, host: str,
                               instance: Instance) -> None:
        self._cast(ctx, host, "build_and_run_instance", instance=instance)

    def terminate_instance(self, ctx: RequestContext, host: str, instance: Instance) -> None:
        self._call(ctx, host, "terminate_instance", instance=instance)

    def instance_power_state(self, ctx: RequestContext, host: str,
                             instance: Instance) -> int | None:
        """The power state ``host``'s driver reports for the instance, None if absent."""
        state: int | None = self._call(ctx, host, "instance_power_state", instance=instance)
        return state

    def audit_host(self, ctx: RequestContext, host: str) -> dict[str, Any]:
        """What ``host``'s hypervisor holds and uses (``virtsdk audit``)."""
        return self._call(ctx, host, "audit_host",  # type: ignore[no-any-return]
                          since="1.2")

    def audit_fix(self, ctx: RequestContext, host: str,
                  differences: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Have ``host`` remove the given safely orphaned holdings."""
        return self._call(ctx, host, "audit_fix",  # type: ignore[no-any-return]
                          since="1.2", differences=differences)

    # -- cold migration / resize ----------------------------------------------------------

    def prep_resize(self, ctx: RequestContext, host: str, instance: Instance, flavor: Flavor,
                    alternates: list[str], migration_type: str) -> None:
        self._cast(ctx, host, "prep_resize", instance=instance, flavor=flavor,
                   alternates=alternates, migration_type=migration_type)

    def resize_instance(self, ctx: RequestContext, host: str, instance: Instance,
                        migration: Migration, flavor: Flavor,
                        migrate_data: ColdMigrateData) -> None:
        self._cast(ctx, host, "resize_instance", instance=instance, migration=migration,
                   flavor=flavor, migrate_data=migrate_data)

    def finish_resize(self, ctx: RequestContext, host: str, instance: Instance,
                      migration: Migration, disk_info: list[DiskInfo],
                      migrate_data: ColdMigrateData | None) -> None:
        self._cast(ctx, host, "finish_resize", instance=instance, migration=migration,
                   disk_info=disk_info, migrate_data=migrate_data)

    def abort_resize_target(self, ctx: RequestContext, host: str, instance: Instance,
                            migration: Migration, migrate_data: ColdMigrateData | None,
                            destroy: bool) -> None:
        self._call(ctx, host, "abort_resize_target", instance=instance, migration=migration,
                   migrate_data=migrate_data, destroy=destroy)

    def restore_resize_source(self, ctx: RequestContext, host: str, instance: Instance,
                              migration: Migration, reason: str, rollback: bool) -> None:
        self._cast(ctx, host, "restore_resize_source", instance=instance,
                   migration=migration, reason=reason, rollback=rollback)

    def confirm_resize(self, ctx: RequestContext, host: str, instance: Instance,
                       migration: Migration) -> None:
        self._cast(ctx, host, "confirm_resize", instance=instance, migration=migration)

    def revert_resize(self, ctx: RequestContext, host: str, instance: Instance,
                      migration: Migration) -> None:
        self._cast(ctx, host, "revert_resize", instance=instance, migration=migration)

    def finish_revert_resize(self, ctx: RequestContext, host: str, instance: Instance,
                             migration: Migration) -> None:
        self._cast(ctx, host, "finish_revert_resize", instance=instance,
                   migration=migration)

    # -- live migration -------------------------------------------------------------------

    def check_can_live_migrate_destination(
        self, ctx: RequestContext, host: str, instance: Instance,
        block_migration: bool | None, disk_over_commit: bool,
    ) -> LiveMigrateData:
        data: LiveMigrateData = self._call(
            ctx, host, "check_can_live_migrate_destination", instance=instance,
            block_migration=block_migration, disk_over_commit=disk_over_commit)
        return data

    def check_can_live_migrate_source(self, ctx: RequestContext, host: str,
                                      instance: Instance,
                                      dest_check_data: LiveMigrateData) -> LiveMigrateData:
        data: LiveMigrateData = self._call(ctx, host, "check_can_live_migrate_source",
                                           instance=instance, dest_check_data=dest_check_data)
        return data

    def pre_live_migration(self, ctx: RequestContext, host: str, instance: Instance,
                           block_migration: bool, disk_info: list[DiskInfo] | None,
                           migrate_data: LiveMigrateData,
                           migration: Migration) -> LiveMigrateData:
        data: LiveMigrateData = self._call(ctx, host, "pre_live_migration", instance=instance,
                                           block_migration=block_migration, disk_info=disk_info,
                                           migrate_data=migrate_data, migration=migration)
        return data

    def live_migration(self, ctx: RequestContext, host: str, instance: Instance, dest: str,
                       block_migration: bool | None, migration: Migration,
                       migrate_data: LiveMigrateData) -> None:
        self._cast(ctx, host, "live_migration", instance=instance, dest=dest,
                   block_migration=block_migration, migration=migration,
                   migrate_data=migrate_data)

    def post_live_migration_at_destination(self, ctx: RequestContext, host: str,
                                           instance: Instance, block_migration: bool,
                                           migration: Migration) -> None:
        self._call(ctx, host, "post_live_migration_at_destination", idempotent=True,
                   instance=instance, block_migration=block_migration, migration=migration)

    def rollback_live_migration_at_destination(
        self, ctx: RequestContext, host: str, instance: Instance, destroy_disks: bool,
        migrate_data: LiveMigrateData | None, migration: Migration,
    ) -> None:
        self._call(ctx, host, "rollback_live_migration_at_destination", idempotent=True,
                   instance=instance, destroy_disks=destroy_disks, migrate_data=migrate_data,
                   migration=migration)

    def live_migration_abort(self, ctx: RequestContext, host: str, instance: Instance,
                             migration_id: int) -> None:
        self._call(ctx, host, "live_migration_abort", instance=instance,
                   migration_id=migration_id)

    def live_migration_force_complete(self, ctx: RequestContext, host: str,
                                      instance: Instance, migration_id: int) -> None:
        self._call(ctx, host, "live_migration_force_complete", instance=instance,
                   migration_id=migration_id)
