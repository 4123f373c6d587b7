"""``QemuDriver``: guests as QEMU processes managed over QMP, no libvirt (entry point
``qemu``).

A third-party driver built only on virtsdk's public API: the instance files, disks and
image cache are :mod:`virtsdk.localdisk`, cold migration is
:class:`virtsdk.localdisk.coldmigration.ColdMigration` over the SDK's disk transports,
live migration is driven by :func:`virtsdk.live_migration.monitor.monitor_migration`
with the configured convergence policies.  What is QEMU-specific lives here and in
:mod:`virtsdk_qemu.guest` (process + persisted definition), :mod:`virtsdk_qemu.qmp`
(the QMP client facade), :mod:`virtsdk_qemu.live` / :mod:`virtsdk_qemu.live_dest` (live
migration over QMP, source and destination) and :mod:`virtsdk_qemu.qmp_job` (the
running migration job).

Every public method says which host calls it; see :mod:`virtsdk.driver` for the flow.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import ClassVar

from oslo_concurrency import processutils
from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.driver import (
    HELD_INCOMING,
    HELD_INSTANCE,
    HELD_RESIZE_COPY,
    Capabilities,
    ComputeDriver,
    DiskObservation,
    PostMethod,
    ProgressCallback,
    RecoverMethod,
    TransferCallback,
)
from virtsdk.exceptions import InstanceExists, InstanceNotFound, Invalid
from virtsdk.localdisk.coldmigration import ColdMigration, DiskMigrationSettings
from virtsdk.localdisk.disks import LocalDisks, supports_direct_io
from virtsdk.localdisk.imagecache import ImageCache
from virtsdk.localdisk.paths import RESIZE_SUFFIX, InstancePaths, checked_uuid
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
from virtsdk_qemu import config, observe
from virtsdk_qemu.guest import DiskDevice, Guest, GuestSpec, host_tag
from virtsdk_qemu.live import QmpLiveMigration
from virtsdk_qemu.live_dest import QmpLiveMigrationDestination

LOG = logging.getLogger(__name__)


def kvm_usable(emulator: str, machine: str, exec_prefix: list[str]) -> bool:
    """Whether QEMU can run a KVM guest here: /dev/kvm opens, and ``emulator``
    creates a stopped KVM machine with the host CPU and quits cleanly (nested setups
    may expose /dev/kvm yet fail to set up a vCPU)."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    try:
        processutils.execute(
            *exec_prefix, emulator, "-machine", f"{machine},accel=kvm", "-cpu", "host",
            "-m", "16M", "-nodefaults", "-no-user-config", "-display", "none", "-S",
            "-monitor", "stdio", process_input="quit\n", timeout=30)
        return True
    except (processutils.ProcessExecutionError, OSError):
        return False


class QemuDriver(ComputeDriver):
    """QEMU over QMP without libvirt: one daemonized QEMU per guest, cold migration
    and resize with disk transfer, live migration over QMP."""

    name: ClassVar[str] = "qemu"
    capabilities: ClassVar[Capabilities] = Capabilities(
        supports_cold_migration=True,
        supports_resize=True,
        supports_live_migration=True,
        supports_block_migration=True,
        supports_migrate_to_same_host=False,
        supports_live_migration_abort=True,
        supports_live_migration_force_complete=True,
        supports_post_copy=True,
        supports_auto_converge=True,
        supports_shared_storage_detection=True,
        has_imagecache=True,
        image_formats=("raw", "qcow2"),
    )

    def __init__(self, conf: cfg.ConfigOpts, host: str) -> None:
        super().__init__(conf, host)  # registers [qemu] (list_opts)
        self.qconf = conf[config.GROUP]
        self.paths = InstancePaths(self.qconf.instances_path, self.qconf.image_cache_path)
        self.image_cache = ImageCache(self.paths.image_cache, self.qconf.image_dirs)
        self.exec_prefix: list[str] = list(self.qconf.host_exec_prefix or [])
        self.tag = host_tag(host)
        self._accel: str | None = None
        self._disk_cache: str | None = None
        self.local_disks = LocalDisks(self.paths, self.image_cache, self.qconf.images_type,
                                      self.qconf.qemu_img_memory_mb)
        self.cold = ColdMigration(
            self.name, host, conf, self, self.paths, self.image_cache, self.local_disks,
            DiskMigrationSettings.from_group(self.qconf))
        self.live = QmpLiveMigration(self)
        self.live_dest = QmpLiveMigrationDestination(self)

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        """Options of ``[qemu]``."""
        return config.list_opts()

    # -- helpers -------------------------------------------------------------------------

    @property
    def accel(self) -> str:
        """``kvm`` or ``tcg`` (``[qemu] accel``; ``auto`` probes /dev/kvm once)."""
        if self._accel is None:
            want = self.qconf.accel
            if want == "auto":
                usable = kvm_usable(self.qconf.emulator, self.qconf.machine,
                                    self.exec_prefix)
                want = "kvm" if usable else "tcg"
                LOG.info("qemu driver on %s: accelerator %s", self.host, want)
            self._accel = want
        return self._accel

    @property
    def disk_cache(self) -> str:
        """``none`` (O_DIRECT) where the instances filesystem supports it, else
        ``writeback`` (tmpfs)."""
        if self._disk_cache is None:
            self._disk_cache = ("none" if supports_direct_io(self.paths.root)
                                else "writeback")
        return self._disk_cache

    def guest(self, instance: Instance | str, directory: Path | None = None) -> Guest:
        """The guest object of ``instance`` (its files may not exist)."""
        inst_dir = directory or self.paths.instance_dir(instance)
        return Guest(inst_dir, self.tag, self.qconf.qmp_timeout, self.exec_prefix)

    def existing(self, instance: Instance) -> Guest:
        """This host's guest of ``instance``: in its directory, or (between
        migrate_disk_and_power_off and confirm/revert) in the kept ``_resize`` copy.
        Raises InstanceNotFound."""
        guest = self.guest(instance)
        if guest.defined():
            return guest
        kept = self.guest(instance, self.paths.resize_dir(instance))
        if kept.defined():
            return kept
        raise InstanceNotFound(instance.name, self.host)

    def guest_spec(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                   vnc_listen: str | None = None) -> GuestSpec:
        """The definition of ``instance`` for the disks now in its directory, on this
        host (VNC on ``vnc_listen``, default this host's ``my_ip``)."""
        kernel, initrd = self.image_cache.kernel_and_initrd(image_meta)
        return GuestSpec(
            uuid=checked_uuid(instance.uuid), name=instance.name,
            memory_mb=flavor.memory_mb, vcpus=flavor.vcpus,
            emulator=self.qconf.emulator, accel=self.accel, machine=self.qconf.machine,
            vnc_listen=vnc_listen or self.qconf.my_ip, disk_cache=self.disk_cache,
            disks=[DiskDevice(target, str(path), fmt)
                   for target, path, fmt in self.local_disks.formats(instance)],
            kernel=str(kernel) if kernel else None,
            initrd=str(initrd) if initrd else None,
            cmdline=(image_meta.properties or {}).get("cmdline"),
            flavor_name=flavor.name)

    # -- the GuestHost half of cold migration (virtsdk.localdisk.coldmigration) ----------

    def has_guest(self, instance: Instance) -> bool:
        return self.instance_exists(instance)

    def is_running(self, instance: Instance) -> bool:
        return self.guest(instance).is_running()

    def instance_disks(self, instance: Instance) -> list[DiskInfo]:
        return self.get_instance_disk_info(instance)

    def save_definition(self, instance: Instance) -> None:
        """guest.json already lives in the instance directory."""
        self.existing(instance)

    def power_off_guest(self, instance: Instance, timeout: int, retry_interval: int) -> None:
        self.power_off(instance, timeout, retry_interval)

    def restore_guest(self, instance: Instance, start: bool) -> None:
        guest = self.existing(instance)
        if start:
            guest.start()

    def remove_guest(self, instance: Instance) -> None:
        for directory in (self.paths.instance_dir(instance), self.paths.resize_dir(instance)):
            guest = self.guest(instance, directory)
            guest.kill()
            guest.undefine()

    def build_guest(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                    network_info: NetworkInfo, power_on: bool) -> None:
        guest = self.guest(instance)
        guest.define(self.guest_spec(instance, flavor, image_meta))
        if power_on:
            guest.start()

    # -- service -------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Called once at service start: the instances directory exists; guests that
        run keep running (they are found again from their directories)."""
        self.paths.root.mkdir(parents=True, exist_ok=True)

    def cleanup_host(self, host: str) -> None:
        """Service stop: nothing to close; guests keep running."""

    # -- lifecycle -----------------------------------------------------------------------

    def spawn(
        self,
        context: RequestContext,
        instance: Instance,
        image_meta: ImageMeta,
        network_info: NetworkInfo,
        power_on: bool = True,
    ) -> None:
        """Any host: create the disks (qcow2 over the cached base image, or raw),
        persist the definition and start QEMU.  Refuses an instance that already
        exists here without touching it; on failure removes everything it created."""
        inst_dir = self.paths.instance_dir(instance)
        if inst_dir.exists():
            raise InstanceExists(f"instance {instance.uuid} already exists on {self.host}")
        inst_dir.mkdir(parents=True)
        try:
            self.local_disks.create(instance, instance.flavor, image_meta)
            self.build_guest(instance, instance.flavor, image_meta, network_info, power_on)
        except BaseException:
            LOG.exception("spawn of %s failed; removing what was created", instance.uuid)
            self.guest(instance).kill()
            shutil.rmtree(inst_dir, ignore_errors=True)
            raise

    def destroy(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        destroy_disks: bool = True,
    ) -> None:
        """Any host: stop QEMU and forget the guest; with ``destroy_disks`` delete its
        directory and a kept ``_resize`` copy, else keep the disks (and the console
        log) but drop the definition.  Idempotent."""
        inst_dir = self.paths.instance_dir(instance)
        resize_dir = self.paths.resize_dir(instance)
        for directory in (inst_dir, resize_dir):
            if directory.is_dir():
                self.guest(instance, directory).kill()
        if destroy_disks:
            for directory in (inst_dir, resize_dir):
                shutil.rmtree(directory, ignore_errors=True)
        else:
            self.guest(instance).undefine()

    def power_off(self, instance: Instance, timeout: int = 0, retry_interval: int = 0) -> None:
        """The instance's host: ACPI power button every ``retry_interval`` s for up to
        ``timeout`` s, then QEMU is stopped.  Returns with the guest off."""
        self.existing(instance).power_off(
            timeout, retry_interval or self.qconf.shutdown_retry_interval)

    def power_on(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """The instance's host: start QEMU from the persisted definition; returns once
        QMP answers (the guest runs)."""
        self.existing(instance).start()

    def get_info(self, instance: Instance) -> InstanceInfo:
        """The instance's host: power state from QMP (SHUTDOWN when QEMU is not
        running), memory and vCPUs from the definition."""
        guest = self.existing(instance)
        spec = guest.spec()
        state = guest.power_state()
        return InstanceInfo(state=state, max_mem_kb=spec.memory_mb * 1024,
                            mem_kb=spec.memory_mb * 1024, num_cpu=spec.vcpus,
                            internal_id=str(guest.pid() or ""))

    def list_instances(self) -> list[str]:
        """Names of the guests defined on this host, running or stopped (a resize
        source's kept copy is not listed: get_info still reports it)."""
        names: list[str] = []
        if not self.paths.root.is_dir():
            return names
        for entry in sorted(self.paths.root.iterdir()):
            if not entry.is_dir():
                continue
            if entry.name.endswith(RESIZE_SUFFIX):
                continue  # a source's kept copy: the instance is the destination's now
            guest = self.guest(entry.name, entry)
            if guest.defined():
                try:
                    names.append(guest.spec().name)
                except Exception:  # noqa: BLE001 - a damaged definition is skipped
                    LOG.warning("skipping %s: damaged definition", entry)
        return names

    def list_instance_uuids_on_host(self) -> dict[str, list[str]]:
        """This host, for reconcile and ``virtsdk audit``: per instance uuid, what the
        instances directory holds: ``instance`` (this host's definition),
        ``resize_copy`` (a ``_resize`` directory), ``incoming`` (a directory without
        this host's definition: a prepared cold-migration target, received disks or
        a live migration's destination being set up)."""
        out: dict[str, list[str]] = {}
        if not self.paths.root.is_dir():
            return out
        for entry in self.paths.root.iterdir():
            if not entry.is_dir():
                continue
            uuid = entry.name.removesuffix(RESIZE_SUFFIX)
            try:
                uuid = checked_uuid(uuid)
            except Invalid:
                continue  # _base, locks
            if entry.name.endswith(RESIZE_SUFFIX):
                kind = HELD_RESIZE_COPY
            elif self.guest(uuid, entry).defined():
                kind = HELD_INSTANCE
            else:
                kind = HELD_INCOMING
            kinds = out.setdefault(uuid, [])
            if kind not in kinds:
                kinds.append(kind)
        return out

    def instance_exists(self, instance: Instance) -> bool:
        """Any host: whether this host has a definition for the instance's UUID."""
        try:
            self.existing(instance)
            return True
        except InstanceNotFound:
            return False

    def get_available_resource(self, nodename: str | None = None) -> HostResources:
        """This host's CPUs and memory (``/proc``), the instances filesystem, and what
        the running guests use."""
        total_mb = avail_mb = 0
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key == "MemTotal":
                    total_mb = int(rest.split()[0]) // 1024
                elif key == "MemAvailable":
                    avail_mb = int(rest.split()[0]) // 1024
        vcpus_used = 0
        for entry in (self.paths.root.iterdir() if self.paths.root.is_dir() else []):
            guest = self.guest(entry.name, entry)
            if guest.defined() and guest.is_running():
                try:
                    vcpus_used += guest.spec().vcpus
                except Exception:  # noqa: BLE001
                    continue
        self.paths.root.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(self.paths.root)
        gib = 1024 ** 3
        total_gb = st.f_blocks * st.f_frsize // gib
        free_gb = st.f_bavail * st.f_frsize // gib
        return HostResources(
            hostname=nodename or self.host, vcpus=os.cpu_count() or 1,
            memory_mb=total_mb, local_gb=total_gb, vcpus_used=vcpus_used,
            memory_mb_used=max(0, total_mb - avail_mb),
            local_gb_used=max(0, total_gb - free_gb),
            hypervisor_type="QEMU", hypervisor_version=0,
            hypervisor_hostname=nodename or self.host,
            cpu_info={"accel": self.accel, "machine": self.qconf.machine},
            disk_available_least=free_gb)

    def get_instance_disk_info(
        self, instance: Instance
    ) -> list[DiskInfo]:
        """The instance's host: its disks as the definition lists them (paths relative
        to the instance directory, sizes from ``qemu-img info``)."""
        spec = self.existing(instance).spec()
        return self.local_disks.describe(
            instance, [(d.target, d.path, d.fmt) for d in spec.disks])

    # -- observation hooks (delegated to virtsdk_qemu.observe) ----------------------------

    def observe_guests(self) -> dict[str, PowerState]:
        """The QEMU processes of this host (from ``/proc``) and their QMP status."""
        return observe.guests(self, self.qconf.qmp_timeout)

    def observe_footprint(self, instance: Instance) -> list[str]:
        """Processes working on the instance's directories and every file in them."""
        return observe.footprint(self, instance)

    def write_disk_marker(self, instance: Instance, marker: bytes) -> None:
        """Write ``marker`` 1 MiB into the root disk (through QEMU while it runs)."""
        observe.write_marker(self, instance, marker[:self.MARKER_SIZE])

    def observe_disk(self, instance: Instance) -> DiskObservation:
        """The marker place and virtual size of the root disk."""
        return observe.read_disk(self, instance, self.MARKER_SIZE)

    # -- cold migration / resize (virtsdk.localdisk.coldmigration) -----------------------

    def prepare_migrate_disk_target(
        self, context: RequestContext, migration: Migration, instance: Instance, flavor: Flavor
    ) -> ColdMigrateData:
        """Destination, in prep_resize: create the instance directory and start a disk
        receiver; refuses (DestinationDiskExists) if the instance has files here."""
        return self.cold.prepare_target(instance, migration)

    def abort_migrate_disk_target(
        self, context: RequestContext, instance: Instance, migrate_data: ColdMigrateData
    ) -> None:
        """Destination, after a failed resize: stop the receiver, remove what it made."""
        self.cold.abort_target(instance, migrate_data)

    def migrate_disk_and_power_off(
        self,
        context: RequestContext,
        instance: Instance,
        dest: str,
        flavor: Flavor,
        network_info: NetworkInfo,
        timeout: int = 0,
        retry_interval: int = 0,
        migrate_data: ColdMigrateData | None = None,
        progress: TransferCallback | None = None,
    ) -> list[DiskInfo]:
        """Source, in resize_instance: refuse shrinking before touching anything, power
        off, keep the directory as ``<dir>_resize``, send root and ephemeral disks.
        Any failure restores the source (restarted if it ran) before re-raising."""
        return self.cold.migrate_disks(instance, dest, flavor, timeout, retry_interval,
                                       migrate_data, progress)

    def finish_migration(
        self,
        context: RequestContext,
        migration: Migration,
        instance: Instance,
        disk_info: list[DiskInfo],
        network_info: NetworkInfo,
        image_meta: ImageMeta,
        resize_instance: bool,
        power_on: bool = True,
    ) -> None:
        """Destination, in finish_resize: verify the received disks, rebase overlays on
        this host's image cache, grow them when ``resize_instance``, define the guest
        for the new flavor and start it."""
        self.cold.finish(migration, instance, disk_info, network_info, image_meta,
                         resize_instance, power_on)

    def confirm_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """Source, in confirm_resize: delete ``<dir>_resize``."""
        self.cold.confirm(instance)

    def finish_revert_migration(
        self,
        context: RequestContext,
        migration: Migration,
        instance: Instance,
        network_info: NetworkInfo,
        power_on: bool = True,
    ) -> None:
        """Source, in revert_resize: put ``<dir>_resize`` back and start the guest when
        ``power_on``.  Idempotent."""
        self.cold.revert(instance, power_on)

    # -- live migration (virtsdk_qemu.live, virtsdk_qemu.live_dest) ----------------------

    def check_can_live_migrate_destination(
        self, context: RequestContext, instance: Instance, src_resources: HostResources,
        dst_resources: HostResources, block_migration: bool | None = None,
        disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        """Destination: refuses block migration and another accelerator or machine
        type; leaves a probe file for the source's shared-storage check."""
        return self.live_dest.check_can_live_migrate_destination(
            context, instance, src_resources, dst_resources, block_migration,
            disk_over_commit)

    def cleanup_live_migration_destination_check(
        self, context: RequestContext, dest_check_data: LiveMigrateData
    ) -> None:
        """Destination: removes the probe file."""
        self.live_dest.cleanup_live_migration_destination_check(context, dest_check_data)

    def check_can_live_migrate_source(
        self, context: RequestContext, instance: Instance, dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Source: shared instance path seen from here; a guest with disks needs it."""
        return self.live.check_can_live_migrate_source(context, instance, dest_check_data)

    def pre_live_migration(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None, migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Destination: QEMU for this host (VNC on its address) waiting with
        ``-incoming defer``, listening on a free port; refuses an existing guest."""
        return self.live_dest.pre_live_migration(context, instance,
                                            network_info, disk_info, migrate_data)

    def live_migration(
        self, context: RequestContext, instance: Instance, dest: str,
        post_method: PostMethod, recover_method: RecoverMethod,
        block_migration: bool = False, migrate_data: LiveMigrateData | None = None,
        migration: Migration | None = None, progress: ProgressCallback | None = None,
    ) -> None:
        """Source: ``migrate`` over QMP, watched by the SDK's monitor and policies;
        ends in exactly one of ``post_method`` / ``recover_method``."""
        self.live.live_migration(context, instance, dest, post_method, recover_method,
                                 block_migration, migrate_data, migration, progress)

    def live_migration_abort(self, instance: Instance) -> None:
        """Source, from another thread: ``migrate_cancel``."""
        self.live.live_migration_abort(instance)

    def live_migration_force_complete(self, instance: Instance) -> None:
        """Source: post-copy when it was enabled for the job, else pause the guest."""
        self.live.live_migration_force_complete(instance)

    def post_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        block_migration: bool = False,
    ) -> None:
        """Destination: checks the guest runs here (resumes one paused to finish)."""
        self.live_dest.post_live_migration_at_destination(context, instance, network_info,
                                                     block_migration)

    def rollback_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Destination: stops the incoming QEMU and removes what pre_live_migration
        made (a shared directory stays)."""
        self.live_dest.rollback_live_migration_at_destination(
            context, instance, network_info, destroy_disks,
            migrate_data)

    def post_live_migration_at_source(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
    ) -> None:
        """Source: stops the source QEMU (``postmigrate``), removes its files unless
        the directory is shared with the destination."""
        self.live.post_live_migration_at_source(context, instance, network_info)

    def cleanup(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Any host, after the instance moved away: stop this host's QEMU and forget
        it; the files go only when no other host's definition is next to them."""
        self.live.cleanup(context, instance, network_info,
                          destroy_disks, migrate_data)
