"""``LibvirtDriver``: the virtsdk compute driver for libvirt/QEMU (entry point ``libvirt``).

The class is thin: it validates input, then delegates to small modules.  Internal
helper API (stable, for ``virtsdk_libvirt.live_migration`` and other modules of this package):

``self.lv_conf``
    this driver's option group ``[libvirt]`` (see :mod:`virtsdk_libvirt.config`).
``self._host``
    :class:`virtsdk_libvirt.host.Host`: ``get_connection()``, ``lookup(name)``,
    ``find(name)``, ``define(xml)``, ``list_domain_names()``, ``resources(hostname)``,
    ``cpu_info()``, ``host_uuid()``.
``self._conn``
    the open ``libvirt.virConnect`` (reconnects when libvirtd restarted).
``self._paths``
    :class:`virtsdk_libvirt.paths.InstancePaths`: ``instance_dir(instance)``,
    ``resize_dir(instance)``, ``disk(instance, name)``, ``console_log(instance)``,
    ``received(directory, name)`` (confines names that came from another host).
``self._image_cache``
    :class:`virtsdk_libvirt.imagecache.ImageCache` of this host.
``self._lookup(instance) -> libvirt.virDomain`` / ``self._guest(instance) -> Guest``
    the instance's domain (found by UUID), raising InstanceNotFound.
``self._exec_prefix``
    ``[libvirt] host_exec_prefix`` as a list, for commands that must run on the host.
``self._domain_xml(instance, flavor, disks, network_info, kernel, initrd, cmdline)``
    the domain XML string for this host (VNC on ``my_ip``, console in the instance dir).
``virtsdk_libvirt.xmlutil.parse``
    the only XML parser to use (hardened).

``virtsdk_libvirt.live_migration.opts.list_opts()`` (a list of ``cfg.Opt``) is appended to the
``[libvirt]`` group by :func:`virtsdk_libvirt.config.list_opts`.

Every public method says which host calls it; see :mod:`virtsdk.driver` for the flow.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import ClassVar

import libvirt
from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.driver import (
    Capabilities,
    ComputeDriver,
    DiskObservation,
    PostMethod,
    ProgressCallback,
    RecoverMethod,
    TransferCallback,
)
from virtsdk.exceptions import InstanceExists, InstanceNotFound
from virtsdk.localdisk.coldmigration import ColdMigration, DiskMigrationSettings
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
from virtsdk_libvirt import config, guest_config, inventory, observe, xmlutil
from virtsdk_libvirt.cold_migration import LibvirtGuests, save_domain_xml
from virtsdk_libvirt.guest import Guest
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.imagecache import ImageCache
from virtsdk_libvirt.live_migration import LiveMigrator
from virtsdk_libvirt.paths import InstancePaths, checked_uuid
from virtsdk_libvirt.storage import LibvirtLocalDisks, supports_direct_io

LOG = logging.getLogger(__name__)

class LibvirtDriver(ComputeDriver):
    """libvirt/QEMU driver: file-backed guests, cold migration and resize with disk
    transfer, live migration."""

    name: ClassVar[str] = "libvirt"
    capabilities: ClassVar[Capabilities] = Capabilities(
        supports_cold_migration=True,
        supports_resize=True,
        has_imagecache=True,
        image_formats=("raw", "qcow2"),
        supports_live_migration=True,
        supports_block_migration=True,
        supports_live_migration_abort=True,
        supports_live_migration_force_complete=True,
        supports_post_copy=True,
        supports_auto_converge=True,
        supports_shared_storage_detection=True,
    )

    def __init__(self, conf: cfg.ConfigOpts, host: str) -> None:
        super().__init__(conf, host)
        self.lv_conf = conf[config.GROUP]
        self._paths = InstancePaths(self.lv_conf.instances_path, self.lv_conf.image_cache_path)
        self._host = Host(self.lv_conf.connection_uri, str(self._paths.root),
                          self.lv_conf.connect_retries, self.lv_conf.connect_retry_interval)
        self._image_cache = ImageCache(self._paths.image_cache, self.lv_conf.image_dirs)
        self._exec_prefix: list[str] = list(self.lv_conf.host_exec_prefix or [])
        self._disk_cachemode: str | None = None
        guests = LibvirtGuests(
            self.host, self._host, self._paths, self.lv_conf, lookup=self._lookup,
            find=self._find, disk_info=self.get_instance_disk_info,
            remove=self._remove_domain, build=self._define_and_start)
        self._cold = ColdMigration(
            self.name, self.host, conf, guests, self._paths, self._image_cache,
            self._local_disks(), DiskMigrationSettings.from_group(self.lv_conf))
        self._live = LiveMigrator(
            conf, self.lv_conf, self.host, self._host, self._paths, self._image_cache,
            lookup=self._lookup, find=self._find, disk_info=self.get_instance_disk_info,
            plug_vifs=lambda inst, net: self.plug_vifs(inst, net),
            unplug_vifs=lambda inst, net: self.unplug_vifs(inst, net))

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        """Options of ``[libvirt]`` (registered when the driver is built): this
        package's and the live-migration ones."""
        return config.list_opts()

    # -- helpers (see the module docstring) ----------------------------------------------

    @property
    def _conn(self) -> libvirt.virConnect:
        return self._host.get_connection()

    def _lookup(self, instance: Instance) -> libvirt.virDomain:
        try:
            return self._conn.lookupByUUIDString(checked_uuid(instance.uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise InstanceNotFound(instance.name, self.host) from exc
            raise

    def _find(self, instance: Instance) -> libvirt.virDomain | None:
        try:
            return self._lookup(instance)
        except InstanceNotFound:
            return None

    def _guest(self, instance: Instance) -> Guest:
        return Guest(self._lookup(instance))

    @property
    def disk_cachemode(self) -> str:
        """``none`` (O_DIRECT) when the instances filesystem supports it, else
        ``writeback`` (tmpfs does not)."""
        if self._disk_cachemode is None:
            self._disk_cachemode = ("none" if supports_direct_io(self._paths.root)
                                    else "writeback")
        return self._disk_cachemode

    def _local_disks(self) -> LibvirtLocalDisks:
        return LibvirtLocalDisks(self._paths, self._image_cache, self.lv_conf.images_type,
                          self.lv_conf.qemu_img_memory_mb)

    def _domain_xml(self, instance: Instance, flavor: Flavor,
                    disks: list[guest_config.DiskSpec], network_info: NetworkInfo,
                    kernel: Path | None = None, initrd: Path | None = None,
                    cmdline: str | None = None) -> str:
        spec = guest_config.GuestSpec(
            instance=instance, flavor=flavor, virt_type=self.lv_conf.virt_type,
            disks=disks, console_log=str(self._paths.console_log(instance)),
            listen_address=self.lv_conf.my_ip, cpu_mode=self.lv_conf.cpu_mode,
            disk_cachemode=self.disk_cachemode,
            kernel=str(kernel) if kernel else None, initrd=str(initrd) if initrd else None,
            cmdline=cmdline, network_info=network_info)
        return xmlutil.to_string(guest_config.build_domain(spec))

    def _define_and_start(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                          network_info: NetworkInfo, power_on: bool) -> None:
        """Define the domain for the disks now in the instance directory; start it
        when asked and wait until it runs.  Used by spawn and finish_migration."""
        kernel, initrd = self._image_cache.kernel_and_initrd(image_meta)
        disks = self._local_disks().specs(instance)
        xml = self._domain_xml(instance, flavor, disks, network_info, kernel, initrd,
                               (image_meta.properties or {}).get("cmdline"))
        self._paths.console_log(instance).touch()
        save_domain_xml(xml, self._paths.instance_dir(instance))
        dom = self._host.define(xml)
        if power_on:
            Guest(dom).start(self.lv_conf.boot_timeout)

    def _remove_domain(self, instance: Instance) -> None:
        """Force the instance's domain off and undefine it, if this host has one."""
        dom = self._find(instance)
        if dom is not None:
            guest = Guest(dom)
            guest.force_off()
            guest.undefine()

    # -- service -------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Called once by the manager at service start: checks libvirt answers and the
        instances directory exists."""
        self._paths.root.mkdir(parents=True, exist_ok=True)
        self._conn.getVersion()

    def cleanup_host(self, host: str) -> None:
        """Called by the manager when its service stops: closes the libvirt
        connection; guests keep running."""
        self._host.close()

    # -- lifecycle -----------------------------------------------------------------------

    def spawn(
        self,
        context: RequestContext,
        instance: Instance,
        image_meta: ImageMeta,
        network_info: NetworkInfo,
        power_on: bool = True,
    ) -> None:
        """Any host, by the manager: create the disks (qcow2 over the cached base image
        or raw), define the domain and start it.  Refuses an instance that already
        exists here without touching it; on failure removes everything it created."""
        inst_dir = self._paths.instance_dir(instance)
        if self._find(instance) is not None or inst_dir.exists():
            raise InstanceExists(f"instance {instance.uuid} already exists on {self.host}")
        inst_dir.mkdir(parents=True)
        try:
            self._local_disks().create(instance, instance.flavor, image_meta)
            self._define_and_start(instance, instance.flavor, image_meta, network_info,
                                   power_on)
        except BaseException:
            LOG.exception("spawn of %s failed; removing what was created", instance.uuid)
            self._remove_domain(instance)
            shutil.rmtree(inst_dir, ignore_errors=True)
            raise

    def destroy(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        destroy_disks: bool = True,
    ) -> None:
        """Any host: force off, undefine and (``destroy_disks``) delete the instance's
        files, including a kept ``_resize`` copy.  Idempotent."""
        self._remove_domain(instance)
        if destroy_disks:
            for directory in (self._paths.instance_dir(instance),
                              self._paths.resize_dir(instance)):
                shutil.rmtree(directory, ignore_errors=True)

    def power_off(self, instance: Instance, timeout: int = 0, retry_interval: int = 0) -> None:
        """The instance's host: clean shutdown requested every ``retry_interval`` s for
        up to ``timeout`` s, then forced off.  Returns with the guest off."""
        self._guest(instance).power_off(timeout, retry_interval or
                                        self.lv_conf.shutdown_retry_interval)

    def power_on(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """The instance's host: start the guest; returns once libvirt reports it
        running."""
        self._guest(instance).start(self.lv_conf.boot_timeout)

    def get_info(self, instance: Instance) -> InstanceInfo:
        """The instance's host: power state and resources from libvirt."""
        dom = self._lookup(instance)
        guest = Guest(dom)
        state = guest.power_state()
        _st, max_mem, mem, ncpu, cpu_time = dom.info()
        return InstanceInfo(state=state, max_mem_kb=int(max_mem), mem_kb=int(mem),
                            num_cpu=int(ncpu), cpu_time_ns=int(cpu_time),
                            internal_id=dom.UUIDString())

    def list_instance_uuids_on_host(self) -> dict[str, list[str]]:
        """Everything this host holds per instance UUID, for the audit: see
        :mod:`virtsdk_libvirt.inventory`."""
        return inventory.held_on_host(self._conn, self._paths.root)

    def list_instances(self) -> list[str]:
        """Names of the domains libvirt has on this host (running or defined)."""
        return self._host.list_domain_names()

    def instance_exists(self, instance: Instance) -> bool:
        """Any host: whether libvirt here has a domain with the instance's UUID."""
        return self._find(instance) is not None

    def get_available_resource(self, nodename: str | None = None) -> HostResources:
        """This host's capacity and usage, from libvirt and the instances
        filesystem."""
        return self._host.resources(nodename or self.host)

    def get_instance_disk_info(
        self, instance: Instance
    ) -> list[DiskInfo]:
        """The instance's host: its file-backed disks as libvirt defines them (paths
        relative to the instance directory, sizes from ``qemu-img info``)."""
        dom_xml = xmlutil.parse(self._lookup(instance).XMLDesc(0))
        return self._local_disks().describe(
            instance, guest_config.disk_sources(dom_xml))

    # -- observation hooks (delegated to virtsdk_libvirt.observe) ------------------------

    def observe_guests(self) -> dict[str, PowerState]:
        """Active domains of this host (running or paused), by UUID."""
        return observe.guests(self)

    def observe_footprint(self, instance: Instance) -> list[str]:
        """The instance's domain and every file of its directories here."""
        return observe.footprint(self, instance)

    def write_disk_marker(self, instance: Instance, marker: bytes) -> None:
        """Write ``marker`` 1 MiB into the root disk (through QEMU while it runs)."""
        observe.write_marker(self, instance, marker[:self.MARKER_SIZE])

    def observe_disk(self, instance: Instance) -> DiskObservation:
        """The marker place and virtual size of the root disk."""
        return observe.read_disk(self, instance, self.MARKER_SIZE)

    # -- cold migration / resize (the SDK's ColdMigration with LibvirtGuests) ------------

    def prepare_migrate_disk_target(
        self, context: RequestContext, migration: Migration, instance: Instance, flavor: Flavor
    ) -> ColdMigrateData:
        """Destination, in prep_resize: create the instance directory and start a
        disk receiver; returns the transport name and ticket for the source.  Refuses
        (DestinationDiskExists) if the instance already has files or a domain here."""
        return self._cold.prepare_target(instance, migration)

    def abort_migrate_disk_target(
        self, context: RequestContext, instance: Instance, migrate_data: ColdMigrateData
    ) -> None:
        """Destination, after a failed resize: stop the receiver and remove what it
        and prepare_migrate_disk_target created."""
        self._cold.abort_target(instance, migrate_data)

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
        """Source, in resize_instance: refuse shrinking before touching anything,
        power off, keep the directory as ``<dir>_resize``, send root and ephemeral
        disks (qcow2: the overlay only).  Any failure restores the source (and
        restarts it if it ran) before re-raising.  Returns the disks sent."""
        return self._cold.migrate_disks(instance, dest, flavor, timeout, retry_interval,
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
        """Destination, in finish_resize: wait for and verify the disks, rebase qcow2
        overlays onto this host's image cache, grow them to the new flavor when
        ``resize_instance``, define the domain and start it (waits until running)."""
        self._cold.finish(migration, instance, disk_info, network_info, image_meta,
                          resize_instance, power_on)

    def confirm_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """Source, in confirm_resize: undefine the old domain, delete ``<dir>_resize``."""
        self._cold.confirm(instance)

    def finish_revert_migration(
        self,
        context: RequestContext,
        migration: Migration,
        instance: Instance,
        network_info: NetworkInfo,
        power_on: bool = True,
    ) -> None:
        """Source, in revert_resize (after the destination destroyed its copy): put
        ``<dir>_resize`` back and start the guest when ``power_on``.  Idempotent."""
        self._cold.revert(instance, power_on)

    # -- live migration (virtsdk_libvirt.live_migration.LiveMigrator) --------------------
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

    def post_live_migration(
        self, context: RequestContext, instance: Instance,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        self._live.post_live_migration(context, instance, migrate_data)

    def post_live_migration_at_source(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo
    ) -> None:
        self._live.post_live_migration_at_source(context, instance, network_info)

    def post_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        block_migration: bool = False,
    ) -> None:
        self._live.post_live_migration_at_destination(context, instance, network_info,
                                                      block_migration)

    def rollback_live_migration_at_source(
        self, context: RequestContext, instance: Instance, migrate_data: LiveMigrateData
    ) -> None:
        self._live.rollback_live_migration_at_source(context, instance, migrate_data)

    def rollback_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        destroy_disks: bool = True, migrate_data: LiveMigrateData | None = None,
    ) -> None:
        self._live.rollback_live_migration_at_destination(
            context, instance, network_info, destroy_disks, migrate_data)
