"""Live migration for the fake driver (the flow and statuses of docs/flows.md).

Checks on both sides (shared storage detected through a check file the destination
leaves on its storage pool), ``pre_live_migration`` creates a paused placeholder on the
destination, ``live_migration`` runs a :class:`~virtsdk_fake.precopy.SimulatedLiveMigration`
under the shared monitor and policies, and the guest's memory and disks move to the
destination in one step under the fabric lock at switch-over.
"""

from __future__ import annotations

import logging
import uuid as uuidlib

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.driver import PostMethod, ProgressCallback, RecoverMethod
from virtsdk.exceptions import (
    DestinationDiskExists,
    InsufficientResources,
    LiveMigrationAborted,
    MigrationError,
    MigrationNotFound,
    MigrationPreCheckError,
)
from virtsdk.live_migration.base import ConvergencePolicy
from virtsdk.live_migration.loader import load_configured_policies
from virtsdk.live_migration.monitor import monitor_migration
from virtsdk.live_migration.policies import required_flags
from virtsdk.objects import (
    DiskInfo,
    HostResources,
    Instance,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk.states import PowerState
from virtsdk.validation import validate_hostname
from virtsdk_fake.local import LocalHost
from virtsdk_fake.migrate_data import FakeLiveMigrateData
from virtsdk_fake.precopy import SimulatedLiveMigration
from virtsdk_fake.storage import FakeDisk, FakeInstance, MiB

LOG = logging.getLogger(__name__)


class FakeLiveMigration:
    """Every live-migration step of one fake host (source and destination): what
    :class:`~virtsdk_fake.driver.FakeDriver` forwards those methods to.  ``conf`` holds
    the ``[live_migration]`` options and the configured convergence policies.  Owns the
    host's running jobs (``hostobj.jobs``, private to this process)."""

    def __init__(self, local: LocalHost, conf: cfg.ConfigOpts) -> None:
        self._local = local
        self.conf = conf
        self.fabric = local.fabric
        self.hostobj = local.state
        self.host = local.name

    # -- checks --------------------------------------------------------------------------

    def check_can_live_migrate_destination(
        self, context: RequestContext, instance: Instance, src_resources: HostResources,
        dst_resources: HostResources, block_migration: bool | None = None,
        disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        """Destination: refuse if the instance is here already or does not fit; leave a
        check file on this host's storage pool for the source to look for."""
        self._local.step("check_can_live_migrate_destination")
        with self.fabric.lock:
            if instance.uuid in self.hostobj.instances:
                raise MigrationPreCheckError(f"instance {instance.uuid} already runs on "
                                             f"{self.host!r}")
            if self._local.enforce_capacity:
                try:
                    no_disk = block_migration is False or self.fabric.shared_storage
                    self.hostobj.check_fits(instance.flavor, f"instance {instance.uuid}",
                                            disk_gb=0 if no_disk else None)
                except InsufficientResources as exc:
                    raise MigrationPreCheckError(str(exc)) from exc
            token = uuidlib.uuid4().hex
            self.fabric.check_files[token] = self.fabric.storage_pool(self.host)
            free = self.hostobj.resources().free_disk_gb
        return FakeLiveMigrateData(block_migration=block_migration,
                                   disk_over_commit=disk_over_commit, filename=token,
                                   disk_available_mb=free * 1024,
                                   fabric=self.fabric.name, checked_on=self.host)

    def cleanup_live_migration_destination_check(self, context: RequestContext,
                                                 dest_check_data: LiveMigrateData) -> None:
        """Destination: remove the check file.  Idempotent."""
        self._local.step("cleanup_live_migration_destination_check")
        with self.fabric.lock:
            self.fabric.check_files.pop(dest_check_data.filename, None)

    def check_can_live_migrate_source(
        self, context: RequestContext, instance: Instance, dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Source: the guest must run here; storage is shared when this host sees the
        destination's check file.  Chooses block migration when not shared and refuses
        a choice that contradicts the storage."""
        self._local.step("check_can_live_migrate_source")
        inst = self._local.get(instance)
        if inst.power_state not in (PowerState.RUNNING, PowerState.PAUSED):
            raise MigrationPreCheckError(f"instance {instance.uuid} is not running "
                                         f"({inst.power_state.name})")
        data = dest_check_data.copy()
        with self.fabric.lock:
            pool = self.fabric.check_files.get(data.filename)
        shared = pool is not None and pool == self.fabric.storage_pool(self.host)
        data.is_shared_instance_path = shared
        data.is_shared_block_storage = shared
        data.instance_relative_path = instance.uuid
        if data.block_migration is None:
            data.block_migration = not shared
        if data.block_migration and shared:
            raise MigrationPreCheckError("block migration is pointless with shared storage")
        if not data.block_migration and not shared:
            raise MigrationPreCheckError("storage is not shared with the destination: "
                                         "block migration is needed")
        return data

    # -- preparation on the destination --------------------------------------------------

    def pre_live_migration(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None, migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Destination: create the instance's paused placeholder (with empty disks
        for a block migration), refusing an instance directory that already exists
        here; return ``migrate_data`` with this host's listen addresses."""
        self._local.step("pre_live_migration")
        shared = bool(migrate_data.is_shared_instance_path)
        block = bool(migrate_data.block_migration)
        placeholder = FakeInstance.build(instance.uuid, instance.name,
                                         instance.flavor.copy(), self._local.kib_per_mb,
                                         instance.metadata)
        placeholder.power_state = PowerState.PAUSED
        placeholder.persistent = False
        if block:
            sizes = {d.path: d.virt_disk_size for d in disk_info or []}
            for name, disk in list(placeholder.disks.items()):
                placeholder.disks[name] = FakeDisk(name, sizes.get(name, disk.size))
        else:
            placeholder.disks = {}
        with self.fabric.lock:
            if not shared and self.hostobj.holds(instance.uuid):
                raise DestinationDiskExists(
                    f"the directory of instance {instance.uuid} already exists on "
                    f"{self.host!r}")
            if instance.uuid in self.hostobj.instances or \
                    instance.uuid in self.hostobj.incoming_live:
                raise DestinationDiskExists(f"instance {instance.uuid} is already on "
                                            f"{self.host!r}")
            if self._local.enforce_capacity:
                self.hostobj.check_fits(instance.flavor, f"instance {instance.uuid}",
                                        disk_gb=None if block else 0)
            self.hostobj.incoming_live[instance.uuid] = placeholder
        result = FakeLiveMigrateData.of(migrate_data.copy())
        result.graphics_listen_addr_vnc = self.hostobj.address
        result.graphics_listen_addr_spice = self.hostobj.address
        result.serial_listen_addr = self.hostobj.address
        result.target_connect_addr = self.hostobj.address
        result.prepared_on = self.host
        return result

    # -- the migration itself (source) ---------------------------------------------------

    def live_migration(
        self, context: RequestContext, instance: Instance, dest: str,
        post_method: PostMethod, recover_method: RecoverMethod, block_migration: bool = False,
        migrate_data: LiveMigrateData | None = None, migration: Migration | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Source: validate ``dest``, run the simulated job under the monitor and the
        configured policies, then call exactly one of ``post_method`` (the guest runs
        on ``dest``) or ``recover_method`` (it still runs here, resumed if it was
        paused), re-raising the failure after ``recover_method``."""
        data = migrate_data or LiveMigrateData(block_migration=block_migration)
        try:
            self._local.step("live_migration")
            validate_hostname(dest)
            job, policies = self._start_job(instance, dest, block_migration)
            interval = self.conf.live_migration.monitor_interval
            clock = self.fabric.clock
            try:
                try:
                    final = monitor_migration(job, policies, progress, interval, clock.now,
                                              clock.sleep)
                except Exception:
                    if not job.postcopy:
                        job.abort()
                        raise
                    # the guest already runs on dest: finish, only without reports
                    LOG.exception("monitoring %s failed in post-copy; finishing it",
                                  instance.uuid)
                    final = monitor_migration(job, [], None, interval, clock.now,
                                              clock.sleep)
            finally:
                with self.fabric.lock:
                    self.hostobj.jobs.pop(instance.uuid, None)
            if final.job_type != "completed":
                if job.error is not None:
                    raise job.error
                if final.job_type == "cancelled":
                    raise LiveMigrationAborted(f"live migration of {instance.uuid} to {dest} "
                                               "was cancelled")
                raise MigrationError(f"live migration of {instance.uuid} to {dest} failed")
        except BaseException:
            self._resume_source(instance.uuid)
            recover_method(context, instance, dest, data)
            raise
        post_method(context, instance, dest, block_migration, data)

    def _start_job(self, instance: Instance, dest: str, block_migration: bool
                   ) -> tuple[SimulatedLiveMigration, list[ConvergencePolicy]]:
        dest_host = self.fabric.host(dest)
        if dest == self.host:
            raise MigrationPreCheckError("cannot live-migrate an instance to its own host")
        inst = self._local.get(instance)
        if instance.uuid not in dest_host.incoming_live:
            raise MigrationError(f"instance {instance.uuid}: pre_live_migration has not "
                                 f"prepared {dest!r}")
        policies = load_configured_policies(self.conf)
        flags = required_flags(policies)
        group = self._local.options
        cap = self.conf.live_migration.bandwidth
        bandwidth = min(self.fabric.link_bandwidth_mbps, cap) if cap else \
            self.fabric.link_bandwidth_mbps
        meta = {**inst.metadata, **instance.metadata}
        params = self.fabric.params.get(instance.uuid)
        dirty = params.dirty_rate_mbps if params and params.dirty_rate_mbps is not None else \
            float(meta.get("fake:dirty_rate_mbps", group.default_dirty_rate_mbps))
        memory_bytes = inst.flavor.memory_mb * MiB
        wset = params.working_set_mb if params and params.working_set_mb is not None else \
            float(meta.get("fake:working_set_mb", inst.flavor.memory_mb))
        disk_bytes = sum(d.allocated for d in inst.disks.values()) if block_migration else 0
        start_params: dict[str, int] = {}
        for policy in policies:  # the fake "measures" the guest's dirty rate exactly
            start_params.update(policy.migration_params(bandwidth * MiB, dirty * MiB))
        self._local.step("live_migration.start")
        uuid = instance.uuid
        job = SimulatedLiveMigration(
            clock=self.fabric.clock, memory_bytes=memory_bytes, disk_bytes=disk_bytes,
            bandwidth_bps=bandwidth * MiB, dirty_rate_bps=dirty * MiB,
            working_set_bytes=int(wset * MiB), max_downtime_ms=group.initial_max_downtime_ms,
            flags=flags, step_s=group.sample_step_s,
            switch_over=lambda: self._switch_over(uuid, dest, block_migration),
            hit=self._local.step, pause_guest=lambda: self._pause_source(uuid),
            throttle_initial=start_params.get("cpu_throttle_initial", 20),
            throttle_increment=start_params.get("cpu_throttle_increment", 10),
            dest=dest, bandwidth_of=lambda: MiB * self.fabric.live_bandwidth_mbps(
                self.host, dest, bandwidth))
        if start_params.get("cpu_limit"):  # the simulated guest is slowed from the start
            job.set_cpu_throttle(start_params["cpu_limit"])
        with self.fabric.lock:
            self.hostobj.jobs[uuid] = job
        return job, policies

    def _switch_over(self, uuid: str, dest: str, block_migration: bool) -> None:
        """Move the guest to ``dest`` in one step: memory and disk bytes copied (block
        migration) or disks handed over (shared storage); the source domain is gone,
        its disk files stay as left-overs until post_live_migration_at_source."""
        with self.fabric.lock:
            dest_host = self.fabric.host(dest)
            src = self.hostobj.instances.get(uuid)
            placeholder = dest_host.incoming_live.get(uuid)
            if src is None or placeholder is None:
                raise MigrationError(f"instance {uuid}: switch-over found no "
                                     f"{'source guest' if src is None else 'destination'}")
            placeholder.memory = bytearray(src.memory)
            if block_migration:
                placeholder.disks = {n: d.copy() for n, d in src.disks.items()}
                self.hostobj.leftovers[uuid] = src.disks
            else:
                placeholder.disks = src.disks
            placeholder.metadata = dict(src.metadata)
            placeholder.boots = src.boots
            placeholder.power_state = PowerState.RUNNING
            dest_host.instances[uuid] = placeholder
            del dest_host.incoming_live[uuid]
            del self.hostobj.instances[uuid]
            src.memory = bytearray()
            src.power_state = PowerState.SHUTDOWN

    def _pause_source(self, uuid: str) -> None:
        with self.fabric.lock:
            inst = self.hostobj.instances.get(uuid)
            if inst is not None and inst.power_state == PowerState.RUNNING:
                inst.power_state = PowerState.PAUSED
                inst.metadata["fake:paused_by_migration"] = "true"

    def _resume_source(self, uuid: str) -> None:
        with self.fabric.lock:
            inst = self.hostobj.instances.get(uuid)
            if inst is not None and inst.metadata.pop("fake:paused_by_migration", ""):
                inst.power_state = PowerState.RUNNING

    def live_migration_abort(self, instance: Instance) -> None:
        """Source, any thread: cancel the running migration (MigrationNotFound if none;
        MigrationError once in post-copy)."""
        self._local.step("live_migration_abort")
        self._job(instance).abort()

    def live_migration_force_complete(self, instance: Instance) -> None:
        """Source: switch to post-copy if the job was started with it, else pause the
        guest so pre-copy converges."""
        self._local.step("live_migration_force_complete")
        job = self._job(instance)
        if "postcopy" in job.flags:
            job.start_postcopy()
        else:
            job.pause()

    def _job(self, instance: Instance) -> SimulatedLiveMigration:
        with self.fabric.lock:
            job = self.hostobj.jobs.get(instance.uuid)
        if job is None:
            raise MigrationNotFound(f"no live migration of instance {instance.uuid} runs "
                                    f"from {self.host!r}")
        return job

    # -- after the migration -------------------------------------------------------------

    def post_live_migration(self, context: RequestContext, instance: Instance,
                            migrate_data: LiveMigrateData | None = None) -> None:
        """Source: volumes would be disconnected here (the fake has none to touch)."""
        self._local.step("post_live_migration")

    def post_live_migration_at_source(self, context: RequestContext, instance: Instance,
                                      network_info: NetworkInfo) -> None:
        """Source: remove the disk files a block migration left here.  Idempotent."""
        self._local.step("post_live_migration_at_source")
        with self.fabric.lock:
            self.hostobj.leftovers.pop(instance.uuid, None)

    def post_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        block_migration: bool = False,     ) -> None:
        """Destination: make the migrated guest's definition persistent."""
        self._local.step("post_live_migration_at_destination")
        with self.fabric.lock:
            self._local.get(instance).persistent = True

    def rollback_live_migration_at_source(self, context: RequestContext, instance: Instance,
                                          migrate_data: LiveMigrateData) -> None:
        """Source: the guest stays here; resume it if the migration paused it."""
        self._local.step("rollback_live_migration_at_source")
        self._resume_source(instance.uuid)

    def rollback_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Destination: remove the placeholder pre_live_migration created.  A guest
        that already runs here is never removed (logged instead).  Idempotent."""
        self._local.step("rollback_live_migration_at_destination")
        with self.fabric.lock:
            self.hostobj.incoming_live.pop(instance.uuid, None)
            if instance.uuid in self.hostobj.instances:
                LOG.error("rollback on %s: instance %s runs here; keeping it",
                          self.host, instance.uuid)
