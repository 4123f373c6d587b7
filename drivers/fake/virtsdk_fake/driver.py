"""The fake driver: an in-memory hypervisor whose hosts share an in-process fabric.

Entry point ``fake`` (group ``virtsdk.compute_drivers``).  Instances hold real bytes:
guest memory (``[fake] memory_kib_per_mb`` KiB per MiB of flavor RAM) and sparse disks
sized by the flavor, so migrations can be checked for lost or duplicated state.  Every
method is a fault-injection step (see :mod:`virtsdk_fake.faults`).

The driver is put together from small objects: :func:`virtsdk_fake.local.join` joins the
fabric and returns this host's :class:`~virtsdk_fake.local.LocalHost`; the lifecycle is
here; the cold-migration and live-migration methods forward to the flows built on that
host, :class:`~virtsdk_fake.cold.FakeColdMigration` and
:class:`~virtsdk_fake.live.FakeLiveMigration` (the shape of the libvirt driver's
``LiveMigrator``).
"""

from __future__ import annotations

import logging
from typing import ClassVar

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.driver import (
    HELD_INCOMING,
    HELD_INSTANCE,
    HELD_LEFTOVER,
    HELD_RESIZE_COPY,
    Capabilities,
    ComputeDriver,
    DiskObservation,
    PostMethod,
    ProgressCallback,
    RecoverMethod,
    TransferCallback,
)
from virtsdk.exceptions import InstanceInvalidState, InstanceNotFound
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    HostResources,
    ImageMeta,
    Instance,
    InstanceInfo,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk.states import PowerState
from virtsdk_fake import local, opts
from virtsdk_fake.cold import FakeColdMigration
from virtsdk_fake.fabric import Fabric, FakeHost
from virtsdk_fake.live import FakeLiveMigration
from virtsdk_fake.storage import FakeInstance

LOG = logging.getLogger(__name__)


class FakeDriver(ComputeDriver):
    """In-memory hypervisor: fabric-shared hosts, real bytes moved by every migration."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(
        supports_cold_migration=True,
        supports_resize=True,
        supports_live_migration=True,
        supports_block_migration=True,
        supports_migrate_to_same_host=True,
        supports_live_migration_abort=True,
        supports_live_migration_force_complete=True,
        supports_post_copy=True,
        supports_auto_converge=True,
        supports_shared_storage_detection=True,
        has_imagecache=False,
        image_formats=("raw", "qcow2"),
    )

    def __init__(self, conf: cfg.ConfigOpts, host: str) -> None:
        """Join the fabric named in ``[fake] fabric`` as host ``host``."""
        super().__init__(conf, host)
        self._local = local.join(self.config_group, host)
        #: the fabric this host is part of (tests reach guests, faults and the clock here)
        self.fabric: Fabric = self._local.fabric
        #: this host's state on the fabric
        self.hostobj: FakeHost = self._local.state
        self._cold = FakeColdMigration(self._local)
        self._live = FakeLiveMigration(self._local, conf)

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        return opts.list_opts()

    # -- service lifecycle -------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Manager start-up on this host: nothing to prepare beyond the fabric."""
        self._local.step("init_host")

    def cleanup_host(self, host: str) -> None:
        """Manager shut-down: the host and its instances stay on the fabric."""
        self._local.step("cleanup_host")

    # -- instance lifecycle ------------------------------------------------------------------

    def spawn(self, context: RequestContext, instance: Instance, image_meta: ImageMeta,
              network_info: NetworkInfo,               power_on: bool = True) -> None:
        """Create the instance here with disks sized by its flavor; the image id and
        name are written at the start of the root disk.  Refuses an instance this host
        already holds (InstanceInvalidState) and, with ``enforce_capacity``, one that
        does not fit (InsufficientResources); on refusal nothing is created."""
        self._local.step("spawn")
        inst = FakeInstance.build(instance.uuid, instance.name, instance.flavor.copy(),
                                  self._local.kib_per_mb, instance.metadata)
        boot = f"virtsdk-fake-image:{image_meta.id}:{image_meta.name}\n".encode()
        root = inst.disks["disk"]
        if root.size:
            root.write(0, boot[:root.size])
        with self.fabric.lock:
            if self.hostobj.holds(instance.uuid):
                raise InstanceInvalidState(instance.uuid, "host", self.host,
                                           "spawn an instance that already exists on")
            if self._local.enforce_capacity:
                self.hostobj.check_fits(instance.flavor, f"instance {instance.uuid}")
            if power_on:
                inst.power_state = PowerState.RUNNING
                inst.boots += 1
            self.hostobj.instances[instance.uuid] = inst

    def destroy(self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
                destroy_disks: bool = True) -> None:
        """Remove the instance from this host (defined guest, received disks, live
        placeholder, left-over disks).  The kept copy of a cold migration
        (``resize_copies``) is not touched: only confirm/revert decide its fate.
        With ``destroy_disks=False`` the disks stay behind as left-overs.  Idempotent."""
        self._local.step("destroy")
        self._remove_local(instance.uuid, destroy_disks)

    def _remove_local(self, uuid: str, destroy_disks: bool = True) -> None:
        with self.fabric.lock:
            h = self.hostobj
            inst = h.instances.pop(uuid, None)
            h.incoming_live.pop(uuid, None)
            h.incoming_disks.pop(uuid, None)
            h.cold_targets.pop(uuid, None)
            if destroy_disks:
                h.leftovers.pop(uuid, None)
            elif inst is not None:
                h.leftovers[uuid] = inst.disks

    def cleanup(self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
                destroy_disks: bool = True,
                migrate_data: LiveMigrateData | None = None) -> None:
        """Source, after the instance moved away: remove what is left of it here."""
        self._local.step("cleanup")
        self._remove_local(instance.uuid, destroy_disks)

    def power_off(self, instance: Instance, timeout: int = 0, retry_interval: int = 0) -> None:
        """Shut the guest down (clean within ``timeout`` simulated seconds, else
        forced); guest memory is lost.  Returns once it is off."""
        self._local.step("power_off")
        self._local.power_off_guest(self._local.get(instance), timeout, retry_interval)

    def power_on(self, context: RequestContext, instance: Instance,
                 network_info: NetworkInfo) -> None:
        """Start a stopped (or resume a paused) guest; returns once it runs."""
        self._local.step("power_on")
        with self.fabric.lock:
            inst = self._local.get(instance)
            if inst.power_state != PowerState.RUNNING:
                if inst.power_state == PowerState.SHUTDOWN:
                    inst.boots += 1
                inst.power_state = PowerState.RUNNING

    def get_info(self, instance: Instance) -> InstanceInfo:
        """The guest's power state here; InstanceNotFound if this host lacks it."""
        self._local.step("get_info")
        inst = self._local.get(instance)
        mem_kb = inst.flavor.memory_mb * 1024
        return InstanceInfo(state=inst.power_state, max_mem_kb=mem_kb,
                            mem_kb=mem_kb if inst.power_state == PowerState.RUNNING else 0,
                            num_cpu=inst.flavor.vcpus, cpu_time_ns=inst.boots * 10**9,
                            internal_id=inst.uuid)

    def list_instances(self) -> list[str]:
        """Names of the instances defined on this host (not kept copies)."""
        self._local.step("list_instances")
        with self.fabric.lock:
            return sorted(i.name for i in self.hostobj.instances.values())

    def instance_exists(self, instance: Instance) -> bool:
        with self.fabric.lock:
            return instance.uuid in self.hostobj.instances

    def list_instance_uuids_on_host(self) -> dict[str, list[str]]:
        """Everything this host holds per instance uuid (see the interface)."""
        with self.fabric.lock:
            h = self.hostobj
            stores = ((HELD_INSTANCE, h.instances), (HELD_RESIZE_COPY, h.resize_copies),
                      (HELD_INCOMING, h.cold_targets), (HELD_INCOMING, h.incoming_disks),
                      (HELD_INCOMING, h.incoming_live), (HELD_LEFTOVER, h.leftovers))
            out: dict[str, list[str]] = {}
            for kind, store in stores:
                for uuid in store:
                    kinds = out.setdefault(uuid, [])
                    if kind not in kinds:
                        kinds.append(kind)
            return out

    def get_available_resource(self, nodename: str | None = None) -> HostResources:
        """Capacity from ``[fake]`` and usage from everything this host holds: defined
        instances, kept cold-migration copies, live placeholders (all resources) and
        received or left-over disks (disk only)."""
        self._local.step("get_available_resource")
        with self.fabric.lock:
            return self.hostobj.resources()

    def get_instance_disk_info(self, instance: Instance
                               ) -> list[DiskInfo]:
        """The instance's disks: virtual and allocated sizes and a content checksum."""
        self._local.step("get_instance_disk_info")
        with self.fabric.lock:
            inst = self.hostobj.instances.get(instance.uuid)
            if inst is None:
                raise InstanceNotFound(instance.uuid, self.host)
            return [d.info() for _, d in sorted(inst.disks.items())]

    # -- observation hooks (the conformance kit's view of the fabric) -----------------------

    #: where write_disk_marker puts its bytes on the root disk (past the boot header)
    MARKER_OFFSET = 1024 * 1024

    def observe_guests(self) -> dict[str, PowerState]:
        """Every guest of this host whose memory is live (running or paused): defined
        instances, kept cold-migration copies and live-migration placeholders."""
        with self.fabric.lock:
            h = self.hostobj
            out: dict[str, PowerState] = {}
            for inst in (*h.incoming_live.values(), *h.resize_copies.values(),
                         *h.instances.values()):
                if inst.power_state in (PowerState.RUNNING, PowerState.PAUSED):
                    if out.get(inst.uuid) != PowerState.RUNNING:
                        out[inst.uuid] = inst.power_state
            return out

    def observe_footprint(self, instance: Instance) -> list[str]:
        """What the fabric holds for the instance on this host."""
        uuid = instance.uuid
        with self.fabric.lock:
            h = self.hostobj
            out = []
            if uuid in h.instances:
                out.append(f"defined instance (disks {sorted(h.instances[uuid].disks)})")
            if uuid in h.resize_copies:
                out.append("kept cold-migration copy")
            out += [f"received disk {n}" for n in sorted(h.incoming_disks.get(uuid, {}))]
            if uuid in h.cold_targets:
                out.append("cold-migration target ticket")
            if uuid in h.incoming_live:
                out.append("live-migration placeholder")
            out += [f"left-over disk {n}" for n in sorted(h.leftovers.get(uuid, {}))]
            return out

    def write_disk_marker(self, instance: Instance, marker: bytes) -> None:
        """Write ``marker`` 1 MiB into the root disk of the defined instance."""
        if len(marker) > self.MARKER_SIZE:
            raise ValueError(f"a marker holds at most {self.MARKER_SIZE} bytes")
        with self.fabric.lock:
            self._local.get(instance).disks["disk"].write(self.MARKER_OFFSET, marker)

    def observe_disk(self, instance: Instance) -> DiskObservation:
        """The marker place and virtual size of the defined instance's root disk."""
        with self.fabric.lock:
            root = self._local.get(instance).disks["disk"]
            return DiskObservation(root.read(self.MARKER_OFFSET, self.MARKER_SIZE), root.size)

    def plug_vifs(self, instance: Instance, network_info: NetworkInfo) -> None:
        """No network to plug: only a fault-injection step."""
        self._local.step("plug_vifs")

    def unplug_vifs(self, instance: Instance, network_info: NetworkInfo) -> None:
        """No network to unplug: only a fault-injection step."""
        self._local.step("unplug_vifs")

    # -- cold migration and resize: FakeColdMigration ----------------------------------------

    def prepare_migrate_disk_target(self, context: RequestContext, migration: Migration,
                                    instance: Instance, flavor: Flavor) -> ColdMigrateData:
        return self._cold.prepare_migrate_disk_target(context, migration, instance, flavor)

    def abort_migrate_disk_target(self, context: RequestContext, instance: Instance,
                                  migrate_data: ColdMigrateData) -> None:
        self._cold.abort_migrate_disk_target(context, instance, migrate_data)

    def migrate_disk_and_power_off(
        self, context: RequestContext, instance: Instance, dest: str, flavor: Flavor,
        network_info: NetworkInfo, timeout: int = 0, retry_interval: int = 0,
        migrate_data: ColdMigrateData | None = None,
        progress: TransferCallback | None = None,
    ) -> list[DiskInfo]:
        return self._cold.migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info, timeout, retry_interval,
            migrate_data, progress)

    def finish_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        disk_info: list[DiskInfo], network_info: NetworkInfo, image_meta: ImageMeta,
        resize_instance: bool, power_on: bool = True,
    ) -> None:
        self._cold.finish_migration(context, migration, instance, disk_info, network_info,
                                    image_meta, resize_instance, power_on)

    def confirm_migration(self, context: RequestContext, migration: Migration,
                          instance: Instance, network_info: NetworkInfo) -> None:
        self._cold.confirm_migration(context, migration, instance, network_info)

    def finish_revert_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        network_info: NetworkInfo, power_on: bool = True,
    ) -> None:
        self._cold.finish_revert_migration(context, migration, instance, network_info,
                                           power_on)

    # -- live migration: FakeLiveMigration ---------------------------------------------------

    def check_can_live_migrate_destination(
        self, context: RequestContext, instance: Instance, src_resources: HostResources,
        dst_resources: HostResources, block_migration: bool | None = None,
        disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        return self._live.check_can_live_migrate_destination(
            context, instance, src_resources, dst_resources, block_migration,
            disk_over_commit)

    def cleanup_live_migration_destination_check(
        self, context: RequestContext, dest_check_data: LiveMigrateData
    ) -> None:
        self._live.cleanup_live_migration_destination_check(context, dest_check_data)

    def check_can_live_migrate_source(
        self, context: RequestContext, instance: Instance, dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
        return self._live.check_can_live_migrate_source(context, instance, dest_check_data)

    def pre_live_migration(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None, migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        return self._live.pre_live_migration(context, instance, network_info, disk_info,
                                             migrate_data)

    def live_migration(
        self, context: RequestContext, instance: Instance, dest: str,
        post_method: PostMethod, recover_method: RecoverMethod, block_migration: bool = False,
        migrate_data: LiveMigrateData | None = None, migration: Migration | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._live.live_migration(context, instance, dest, post_method, recover_method,
                                  block_migration, migrate_data, migration, progress)

    def live_migration_abort(self, instance: Instance) -> None:
        self._live.live_migration_abort(instance)

    def live_migration_force_complete(self, instance: Instance) -> None:
        self._live.live_migration_force_complete(instance)

    def post_live_migration(self, context: RequestContext, instance: Instance,
                            migrate_data: LiveMigrateData | None = None) -> None:
        self._live.post_live_migration(context, instance, migrate_data)

    def post_live_migration_at_source(self, context: RequestContext, instance: Instance,
                                      network_info: NetworkInfo) -> None:
        self._live.post_live_migration_at_source(context, instance, network_info)

    def post_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        block_migration: bool = False,
    ) -> None:
        self._live.post_live_migration_at_destination(context, instance, network_info,
                                                      block_migration)

    def rollback_live_migration_at_source(self, context: RequestContext, instance: Instance,
                                          migrate_data: LiveMigrateData) -> None:
        self._live.rollback_live_migration_at_source(context, instance, migrate_data)

    def rollback_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        destroy_disks: bool = True, migrate_data: LiveMigrateData | None = None,
    ) -> None:
        self._live.rollback_live_migration_at_destination(
            context, instance, network_info, destroy_disks, migrate_data)
