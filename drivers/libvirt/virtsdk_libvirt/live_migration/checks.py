"""Live-migration pre-checks of the libvirt driver (a step of ``LiveMigrator``).

The conductor's live-migration task asks the destination first
(:meth:`LiveMigrationChecks.check_can_live_migrate_destination`: CPU compatibility, free disk,
a temporary file in its instances directory), then the source
(:meth:`LiveMigrationChecks.check_can_live_migrate_source`: does it see that file, i.e. is the
instance path shared; block migration chosen or refused; enough disk for it), then
the destination again (:meth:`LiveMigrationChecks.cleanup_live_migration_destination_check`
removes the file).  Every refusal is a MigrationPreCheckError saying why; nothing
has been touched at that point except the temporary file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import libvirt
from lxml import etree

from virtsdk.context import RequestContext
from virtsdk.exceptions import MigrationPreCheckError, UnsafePath
from virtsdk.objects import DiskInfo, HostResources, Instance, LiveMigrateData
from virtsdk.validation import confine_path
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.migrate_data import LibvirtLiveMigrateData
from virtsdk_libvirt.paths import InstancePaths

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
CHECK_FILE_PREFIX = ".virtsdk-shared-check-"


def cpu_xml(cpu_info: dict[str, Any]) -> str:
    """A ``<cpu>`` document (for ``compareCPU``) from ``HostResources.cpu_info``."""
    cpu = etree.Element("cpu")
    for key in ("arch", "model", "vendor"):
        if cpu_info.get(key):
            etree.SubElement(cpu, key).text = str(cpu_info[key])
    topo = cpu_info.get("topology") or {}
    if topo:
        etree.SubElement(cpu, "topology", {k: str(v) for k, v in sorted(topo.items())})
    for name in cpu_info.get("features") or []:
        etree.SubElement(cpu, "feature", policy="require", name=str(name))
    return xmlutil.to_string(cpu)


def required_disk_bytes(disks: list[DiskInfo], disk_over_commit: bool) -> int:
    """Destination space a block migration needs: what the files occupy when
    over-commit is allowed, their full virtual size otherwise."""
    if disk_over_commit:
        return sum(d.disk_size for d in disks)
    return sum(max(d.virt_disk_size, d.disk_size) for d in disks)


class LiveMigrationChecks:
    """The pre-checks of a live migration on one host (destination and source): this
    host's name (for messages), its libvirt :class:`Host` (``compareCPU``), its instance
    paths and the driver's disk listing of an instance."""

    def __init__(self, hostname: str, host: Host, paths: InstancePaths,
                 disk_info: Callable[[Instance], list[DiskInfo]]) -> None:
        self.host = hostname
        self._host = host
        self._paths = paths
        self._disk_info = disk_info

    # -- destination ---------------------------------------------------------------------

    def check_can_live_migrate_destination(
        self,
        context: RequestContext,
        instance: Instance,
        src_resources: HostResources,
        dst_resources: HostResources,
        block_migration: bool | None = None,
        disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        """Destination host, called by the conductor before anything moves.

        Checks the source's CPU against this host (libvirt ``compareCPU``), records
        the free disk (``disk_available_least`` with over-commit, free space without)
        and creates a temporary file in this host's instances directory for the
        source to look for.  Raises MigrationPreCheckError for an incompatible CPU.
        """
        self._compare_cpu(src_resources.cpu_info)
        if disk_over_commit and dst_resources.disk_available_least is not None:
            available_gb = dst_resources.disk_available_least
        else:
            available_gb = dst_resources.free_disk_gb
        root = self._paths.root
        root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=CHECK_FILE_PREFIX, dir=root)
        os.close(fd)
        return LibvirtLiveMigrateData(
            block_migration=block_migration,
            disk_over_commit=disk_over_commit,
            filename=os.path.basename(name),
            disk_available_mb=int(available_gb) * 1024,
        )

    def _compare_cpu(self, cpu_info: dict[str, Any]) -> None:
        if not cpu_info or not cpu_info.get("model"):
            LOG.info("source reported no CPU model; CPU comparison skipped")
            return
        conn = self._host.get_connection()
        try:
            result = conn.compareCPU(cpu_xml(cpu_info), 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT,
                                        libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
                LOG.info("libvirt cannot compare CPUs here (%s); skipped", exc)
                return
            raise MigrationPreCheckError(
                f"cannot compare the source CPU ({cpu_info.get('model')}) with host "
                f"{self.host}: {exc}") from exc
        if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            raise MigrationPreCheckError(
                f"the source CPU ({cpu_info.get('vendor', '')} {cpu_info.get('model')}) "
                f"is not compatible with host {self.host}'s CPU")

    def cleanup_live_migration_destination_check(
        self, context: RequestContext, dest_check_data: LiveMigrateData
    ) -> None:
        """Destination host: remove the temporary file of the shared-storage check.
        Idempotent; a name that is not one of ours is ignored."""
        path = self._check_file(dest_check_data.filename)
        if path is not None:
            path.unlink(missing_ok=True)

    def _check_file(self, filename: str) -> Any:
        if not filename or not filename.startswith(CHECK_FILE_PREFIX) or "/" in filename:
            return None
        try:
            return confine_path(self._paths.root, filename)
        except UnsafePath:
            return None

    # -- source --------------------------------------------------------------------------

    def check_can_live_migrate_source(
        self,
        context: RequestContext,
        instance: Instance,
        dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Source host, after the destination check.

        Shared instance path: the destination's temporary file is visible here.
        Shared block storage: the instance has no local disks, or its instance path is
        shared.  ``block_migration=None`` becomes ``not shared block storage``; asking
        for block migration on shared storage, or for none without it, is refused, as
        is a block migration larger than the destination's free disk.  Returns the
        check data completed.
        """
        data = LibvirtLiveMigrateData.of(dest_check_data.copy())
        path = self._check_file(data.filename)
        data.is_shared_instance_path = bool(path is not None and path.exists())
        disks: list[DiskInfo] = self._disk_info(instance)
        data.is_shared_block_storage = data.is_shared_instance_path or not disks
        if data.block_migration is None:
            data.block_migration = not data.is_shared_block_storage
        if data.block_migration:
            if data.is_shared_block_storage and disks:
                raise MigrationPreCheckError(
                    f"block migration of {instance.name} requested but its disks are on "
                    "storage shared with the destination; migrate without block migration")
            need = required_disk_bytes(disks, data.disk_over_commit)
            have = data.disk_available_mb * MiB
            if need > have:
                raise MigrationPreCheckError(
                    f"not enough disk on the destination for {instance.name}: needs "
                    f"{need // MiB} MiB, has {data.disk_available_mb} MiB"
                    + ("" if data.disk_over_commit else " (without disk over-commit)"))
        elif not data.is_shared_block_storage:
            raise MigrationPreCheckError(
                f"{instance.name} has local disks that are not on storage shared with the "
                "destination; use block migration")
        data.instance_relative_path = self._paths.instance_dir(instance).name
        data.source_instance_dir = str(self._paths.instance_dir(instance))
        data.source_image_cache = str(self._paths.image_cache)
        return data
