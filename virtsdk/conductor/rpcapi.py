"""Client side of the conductor RPC API (topic ``conductor``).

Called by the API (``migrate_server``, ``build_instance``: calls, so validation and
scheduling errors come back to the caller) and by compute managers
(``resize_instance``: a cast, to reschedule a cold migration to an alternate host).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.objects import Flavor, Instance

TOPIC = "conductor"

#: The conductor RPC API's versions (see :data:`virtsdk.compute.rpcapi.VERSIONS`).
#: 1.0 - the first versioned release
VERSIONS = rpc.RPCAPIVersions({"1.0": {}}, "conductor")


class ConductorAPI:
    def __init__(self, conf: cfg.ConfigOpts) -> None:
        #: sends at ``[upgrade_levels] conductor`` (default: the current version)
        #: re-sent while the broker cannot route it (virtsdk.rpc.delivery)
        self._client = rpc.reliable(conf, VERSIONS.client(conf, TOPIC,
                                                          timeout=conf.api.rpc_call_timeout))
        #: Tests and demos only: ``hook(method)`` runs before each message leaves;
        #: what it raises is what the sender sees.
        self.fault_hook: Callable[[str], None] | None = None

    def _hook(self, method: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(method)

    def migrate_server(self, ctx: RequestContext, instance: Instance,
                       scheduler_hint: dict[str, Any], live: bool, rebuild: bool,
                       flavor: Flavor | None, block_migration: bool | None,
                       disk_over_commit: bool, migration_type: str = "") -> Any:
        self._hook("migrate_server")
        return self._client.call(ctx, "migrate_server", instance=instance,
                                 scheduler_hint=scheduler_hint, live=live, rebuild=rebuild,
                                 flavor=flavor, block_migration=block_migration,
                                 disk_over_commit=disk_over_commit,
                                 migration_type=migration_type)

    def build_instance(self, ctx: RequestContext, instance: Instance,
                       host: str | None) -> str:
        self._hook("build_instance")
        chosen: str = self._client.call(ctx, "build_instance", instance=instance, host=host)
        return chosen

    def resize_instance(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                        alternates: list[str], migration_type: str) -> None:
        self._hook("resize_instance")
        self._client.cast(ctx, "resize_instance", instance=instance, flavor=flavor,
                          alternates=alternates, migration_type=migration_type)
