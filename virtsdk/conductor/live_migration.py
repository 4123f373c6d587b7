"""The conductor's live-migration task: checks, destination, then the source cast.

Called by :meth:`ConductorManager.migrate_server` (``live and not flavor``) inside
its RPC call from the API, so every refusal here reaches the user as an exception
before anything has moved.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from oslo_config import cfg

from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.exceptions import (
    ComputeServiceUnavailable,
    Conflict,
    HostNotFound,
    InstanceInvalidState,
    MigrationPreCheckError,
    NoValidHost,
)
from virtsdk.objects import Instance, LiveMigrateData, Migration
from virtsdk.scheduler import RequestSpec, Scheduler
from virtsdk.states import MigrationStatus, PowerState, VMState

LOG = logging.getLogger(__name__)

#: seconds between looks at the migration record while the checks run
_WATCH_INTERVAL = 0.05


class LiveMigrationTask:
    """One live migration's conductor-side work (Nova's LiveMigrationTask)."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database, scheduler: Scheduler,
                 compute_rpc: ComputeAPI, ctx: RequestContext, instance: Instance,
                 destination: str | None, block_migration: bool | None,
                 disk_over_commit: bool, migration: Migration) -> None:
        self.conf = conf
        self.db = db
        self.scheduler = scheduler
        self.compute_rpc = compute_rpc
        self.ctx = ctx
        self.instance = instance
        self.source = str(instance.host)
        self.destination = destination
        self.block_migration = block_migration
        self.disk_over_commit = disk_over_commit
        self.migration = migration

    def execute(self) -> str:
        """Run the checks, pick or check the destination, record it on the migration
        and cast ``live_migration`` to the source.  Returns the destination."""
        self._check_instance_is_active()
        self._check_host_is_up(self.source)
        if self.destination is None:
            dest, data = self._find_destination()
        else:
            dest = self.destination
            self._check_requested_destination(dest)
            data = self._call_checks(dest)
        self.migration = self.db.migration_update(int(self.migration.id or 0),
                                                  {"dest_host": dest, "dest_node": dest})
        self.compute_rpc.live_migration(self.ctx, self.source, self.instance, dest,
                                        self.block_migration, self.migration, data)
        return dest

    def _check_instance_is_active(self) -> None:
        inst = self.instance
        if inst.vm_state != VMState.ACTIVE or inst.power_state not in (
                PowerState.RUNNING, PowerState.PAUSED):
            raise InstanceInvalidState(inst.uuid, "power_state", inst.power_state.name,
                                       "live-migrate")

    def _check_host_is_up(self, host: str, enabled: bool = False) -> None:
        """The host's service is up; with ``enabled`` also not disabled (a disabled
        source may still send its guests away: that is how a host is drained)."""
        svc = self.db.service_get(host)
        if svc is None:
            raise HostNotFound(f"compute host {host!r} not found")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        if not svc.is_up(self.conf.compute.service_down_time, now):
            raise ComputeServiceUnavailable(f"compute service of host {host!r} is down")
        if enabled and svc.disabled:
            raise ComputeServiceUnavailable(f"compute service of host {host!r} is "
                                            "disabled")

    def _check_requested_destination(self, dest: str) -> None:
        if dest == self.source:
            raise MigrationPreCheckError(
                f"instance {self.instance.uuid} already runs on {dest!r}: cannot "
                "live-migrate to its own host")
        self._check_host_is_up(dest, enabled=True)
        spec = RequestSpec(flavor=self.instance.flavor, instance_uuid=self.instance.uuid,
                           force_hosts=[dest])
        try:
            self.scheduler.select_and_claim(self.ctx, spec)
        except NoValidHost as exc:
            raise MigrationPreCheckError(
                f"requested host {dest!r} cannot take instance {self.instance.uuid}: "
                f"{exc}") from exc

    def _call_checks(self, dest: str) -> LiveMigrateData:
        """The drivers' compatibility checks: destination, which asks the source.

        The call runs in a helper thread while this one watches the migration
        record: if a restart of the source settles the migration meanwhile (its
        recovery marks it failed), the caller gets Conflict at once instead of
        waiting ``rpc_call_timeout`` for an answer that cannot come."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["data"] = self.compute_rpc.check_can_live_migrate_destination(
                    self.ctx, dest, self.instance, self.block_migration,
                    self.disk_over_commit)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the waiting thread
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"live-checks-{self.migration.id}",
                                  daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(_WATCH_INTERVAL)
            if not worker.is_alive():
                break
            status = self.db.migration_get(int(self.migration.id or 0)).status
            if status != MigrationStatus.ACCEPTED:
                raise Conflict(
                    f"live migration {self.migration.id} of {self.instance.uuid} was "
                    f"settled as {status!r} while its checks ran (a host restarted)")
        if "error" in box:
            raise box["error"]
        data: LiveMigrateData = box["data"]
        return data

    def _find_destination(self) -> tuple[str, LiveMigrateData]:
        ignore = [self.source]
        errors: list[str] = []
        for _attempt in range(self.conf.compute.live_migration_retry_count):
            spec = RequestSpec(flavor=self.instance.flavor,
                               instance_uuid=self.instance.uuid, ignore_hosts=list(ignore))
            try:
                host = self.scheduler.select_and_claim(self.ctx, spec)[0]
            except NoValidHost as exc:
                if errors:
                    raise NoValidHost(f"{exc}; hosts refused by the checks: "
                                      f"{'; '.join(errors)}") from exc
                raise
            try:
                return host, self._call_checks(host)
            except MigrationPreCheckError as exc:
                LOG.info("live migration of %s: %s refused: %s", self.instance.uuid, host,
                         exc)
                errors.append(f"{host}: {exc}")
                ignore.append(host)
        raise NoValidHost(f"no destination after {len(ignore) - 1} attempts: "
                          f"{'; '.join(errors)}")
