"""Live migration for the libvirt driver.

:class:`LiveMigrator` holds every live-migration step of one host, built from
explicit, typed dependencies (options, hostname, the libvirt :class:`Host`, the
instance paths, the image cache and five of the driver's guest operations) and
owning its state (the running jobs).  Its steps come from one module each:

* :mod:`.checks` - ``check_can_live_migrate_destination`` / ``_source``,
  ``cleanup_live_migration_destination_check`` (destination, source, destination);
* :mod:`.pre` - ``pre_live_migration`` (destination);
* :mod:`.source` - ``live_migration``, ``live_migration_abort``,
  ``live_migration_force_complete`` (source), using :mod:`.xml_rewrite` (destination
  XML), :mod:`.migrate` (flags, parameters, ``migrateToURI3`` and its legacy fallback)
  and :mod:`.job` (the running job as a ``MigrationJob`` for the shared monitor);
* :mod:`.post` / :mod:`.rollback` - cleanup after success or failure on both hosts;
* :mod:`.opts` - the ``[libvirt] live_migration_*`` options.

:class:`virtsdk_libvirt.driver.LibvirtDriver` builds one ``LiveMigrator`` (``self._live``)
and forwards each live-migration method of :class:`virtsdk.driver.ComputeDriver` to it.

The data this driver carries between the hosts is
:class:`virtsdk_libvirt.migrate_data.LibvirtLiveMigrateData` (typed, versioned): the
source's and the destination's instance directory and image cache, and after success
the measured downtime, bytes transferred and the libvirt call used.
"""

from __future__ import annotations

from collections.abc import Callable

import libvirt
from oslo_config import cfg

from virtsdk.objects import DiskInfo, Instance, NetworkInfo
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.imagecache import ImageCache
from virtsdk_libvirt.live_migration.checks import CheckMixin
from virtsdk_libvirt.live_migration.job import LibvirtMigrationJob
from virtsdk_libvirt.live_migration.post import PostMigrationMixin
from virtsdk_libvirt.live_migration.pre import PreMigrationMixin
from virtsdk_libvirt.live_migration.rollback import RollbackMixin
from virtsdk_libvirt.live_migration.source import SourceMigrationMixin
from virtsdk_libvirt.paths import InstancePaths


class LiveMigrator(
    CheckMixin, PreMigrationMixin, SourceMigrationMixin, PostMigrationMixin, RollbackMixin
):
    """Every live-migration step of one libvirt host (see the module docstring)."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        lv_conf: cfg.ConfigOpts.GroupAttr,
        hostname: str,
        host: Host,
        paths: InstancePaths,
        image_cache: ImageCache,
        *,
        lookup: Callable[[Instance], libvirt.virDomain],
        find: Callable[[Instance], libvirt.virDomain | None],
        disk_info: Callable[[Instance], list[DiskInfo]],
        plug_vifs: Callable[[Instance, NetworkInfo], None],
        unplug_vifs: Callable[[Instance, NetworkInfo], None],
    ) -> None:
        self.conf = conf
        self.lv_conf = lv_conf  # the [libvirt] group of conf (oslo.config GroupAttr)
        self.host = hostname
        self._host = host
        self._paths = paths
        self._image_cache = image_cache
        self._lookup = lookup
        self._find = find
        self.get_instance_disk_info = disk_info
        self.plug_vifs = plug_vifs
        self.unplug_vifs = unplug_vifs
        self._lm_jobs: dict[str, LibvirtMigrationJob] = {}

