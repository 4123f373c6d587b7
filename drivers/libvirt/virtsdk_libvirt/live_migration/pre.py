"""``pre_live_migration`` of the libvirt driver: the destination gets ready.

Called on the destination host by the source's compute manager (RPC call) after the
checks and before ``live_migration``.  It creates the instance directory (refusing one
that already exists), the kernel / initrd / base image in this host's image cache,
empty target disks for a block migration (so QEMU's NON_SHARED_INC mirror can fill
them), the console log; refuses block migration with volumes; plugs the VIFs with a
bounded retry; and answers with this host's listen addresses, instance directory and
migration address.  On failure it removes what it created before re-raising, so the
destination is clean; the directory it creates carries a marker file so that
``rollback_live_migration_at_destination`` never removes a directory it did not make.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.exceptions import (
    DestinationDiskExists,
    MigrationError,
    UnsafePath,
)
from virtsdk.objects import (
    DiskInfo,
    Instance,
    LiveMigrateData,
    NetworkInfo,
)
from virtsdk.validation import confine_path
from virtsdk_libvirt import disk
from virtsdk_libvirt.imagecache import ImageCache
from virtsdk_libvirt.migrate_data import LibvirtLiveMigrateData
from virtsdk_libvirt.paths import InstancePaths

LOG = logging.getLogger(__name__)

#: Marker left in an instance directory created by pre_live_migration until the
#: migration succeeded (post_live_migration_at_destination removes it).
INCOMING_MARKER = ".virtsdk-incoming"


def plug_with_retry(
    plug: Callable[[], None],
    attempts: int,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call ``plug`` until it succeeds, at most ``attempts`` times, ``interval``
    seconds apart.  Returns the attempt that succeeded; raises MigrationError with the
    last failure after the last attempt."""
    last: Exception | None = None
    for attempt in range(1, max(1, attempts) + 1):
        try:
            plug()
            return attempt
        except Exception as exc:  # noqa: BLE001 - any plugging failure is retried
            last = exc
            LOG.warning("plugging VIFs failed (attempt %d/%d): %s", attempt, attempts, exc)
            if attempt < attempts:
                sleep(interval)
    raise MigrationError(f"VIFs could not be plugged after {attempts} attempts: {last}")


class PreMigration:
    """``pre_live_migration`` on the destination host: this host's name (for messages),
    its ``[libvirt]`` options (retry count and interval, listen and inbound addresses),
    instance paths and image cache, the driver's VIF plugging and the sleep between
    plugging attempts."""

    def __init__(
        self,
        hostname: str,
        lv_conf: cfg.ConfigOpts.GroupAttr,
        paths: InstancePaths,
        image_cache: ImageCache,
        plug_vifs: Callable[[Instance, NetworkInfo], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = hostname
        self.lv_conf = lv_conf  # the [libvirt] group
        self._paths = paths
        self._image_cache = image_cache
        self._plug_vifs = plug_vifs
        self._sleep = sleep

    def pre_live_migration(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None,
        migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Destination host, by RPC call from the source manager.

        Guarantees: an existing instance directory is never touched (raises
        DestinationDiskExists); ``instance_relative_path`` cannot leave the instances
        directory (raises UnsafePath); on any failure everything created here is removed.
        Returns ``migrate_data`` completed with this host's VNC/SPICE/serial listen
        address, its instance directory and image cache, and its migration address.
        """
        data = LibvirtLiveMigrateData.of(migrate_data.copy())
        inst_dir = self._instance_dir(instance, data)
        created = False
        try:
            if not data.is_shared_instance_path:
                if inst_dir.exists():
                    raise DestinationDiskExists(
                        f"instance directory {inst_dir} already exists on {self.host}; "
                        "refusing to overwrite it")
                inst_dir.mkdir(parents=True)
                created = True
                (inst_dir / INCOMING_MARKER).touch()
                self._fetch_images(instance)
                if not data.is_shared_block_storage:
                    self._create_target_disks(inst_dir, disk_info or [])
                self._paths.console_log(instance).touch()
            plug_with_retry(
                lambda: self._plug_vifs(instance, network_info),
                self.lv_conf.live_migration_retry_count,
                self.lv_conf.live_migration_retry_interval,
                self._sleep,
            )
        except BaseException:
            if created:
                LOG.warning("pre_live_migration of %s failed; removing %s",
                            instance.uuid, inst_dir)
                shutil.rmtree(inst_dir, ignore_errors=True)
            raise
        my_ip = self.lv_conf.my_ip
        data.graphics_listen_addr_vnc = my_ip
        data.graphics_listen_addr_spice = my_ip
        data.serial_listen_addr = my_ip
        data.target_connect_addr = self.lv_conf.live_migration_inbound_addr or my_ip
        data.vifs = list(network_info.vifs)
        data.dest_instance_dir = str(inst_dir)
        data.dest_image_cache = str(self._paths.image_cache)
        return data

    def _instance_dir(self, instance: Instance, data: LiveMigrateData) -> Path:
        """This host's directory for ``instance``: ``instance_relative_path`` confined
        to the instances directory, and it must be the instance's own directory."""
        own = self._paths.instance_dir(instance)
        rel = data.instance_relative_path or own.name
        path = confine_path(self._paths.root, rel)
        if path != own:
            raise UnsafePath(rel, str(self._paths.root))
        return path

    def _fetch_images(self, instance: Instance) -> None:
        """Kernel, initrd and base disk of the instance's image in this host's cache
        (the migrated domain and its qcow2 overlays refer to them)."""
        image = instance.image
        if image is None:
            return
        self._image_cache.kernel_and_initrd(image)
        if image.location:
            self._image_cache.base_disk(image)

    def _create_target_disks(self, inst_dir: Path, disks: list[DiskInfo]) -> None:
        """Empty disks of the right size and format for the block-migration mirror:
        qcow2 overlays over the cached base when the source disk has a backing file
        (only the overlay is copied, NON_SHARED_INC), plain sparse files otherwise."""
        for info in disks:
            path = self._paths.received(inst_dir, info.path)
            if info.type not in disk.FORMATS:
                raise MigrationError(f"disk {info.path}: unsupported format {info.type!r}")
            if info.backing_file:
                if "/" in info.backing_file:
                    raise UnsafePath(info.backing_file, str(self._paths.image_cache))
                base = confine_path(self._paths.image_cache, info.backing_file)
                if not base.is_file():
                    raise MigrationError(
                        f"disk {info.path}: backing file {info.backing_file} is not in "
                        f"{self.host}'s image cache")
                disk.create_overlay(path, base, disk.info(base).format, info.virt_disk_size)
            else:
                disk.create_blank(path, info.type, info.virt_disk_size)
