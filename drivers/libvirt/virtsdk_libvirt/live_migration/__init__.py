"""Live migration for the libvirt driver.

:class:`LiveMigrator` holds every live-migration step of one host, built from
explicit, typed dependencies (options, hostname, the libvirt :class:`Host`, the
instance paths, the image cache and five of the driver's guest operations).  It
builds one small step object per phase, each given only what it uses, and forwards
to them:

* :class:`.checks.LiveMigrationChecks` - ``check_can_live_migrate_destination`` /
  ``_source``, ``cleanup_live_migration_destination_check`` (destination, source,
  destination);
* :class:`.pre.PreMigration` - ``pre_live_migration`` (destination);
* :class:`.source.SourceMigration` - ``live_migration``, ``live_migration_abort``,
  ``live_migration_force_complete`` (source), using :mod:`.xml_rewrite` (destination
  XML), :mod:`.migrate` (flags, parameters, ``migrateToURI3`` and its legacy fallback)
  and :mod:`.job` (the running job as a ``MigrationJob`` for the shared monitor); it
  owns the running jobs, the only state of a live migration kept between calls;
* :class:`.post.PostMigration` / :class:`.rollback.Rollback` - cleanup after success
  or failure on both hosts;
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

from virtsdk.context import RequestContext
from virtsdk.driver import PostMethod, ProgressCallback, RecoverMethod
from virtsdk.objects import (
    DiskInfo,
    HostResources,
    Instance,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.imagecache import ImageCache
from virtsdk_libvirt.live_migration.checks import LiveMigrationChecks
from virtsdk_libvirt.live_migration.post import PostMigration
from virtsdk_libvirt.live_migration.pre import PreMigration
from virtsdk_libvirt.live_migration.rollback import Rollback
from virtsdk_libvirt.live_migration.source import SourceMigration
from virtsdk_libvirt.paths import InstancePaths


class LiveMigrator:
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
        # lv_conf is the [libvirt] group of conf (oslo.config GroupAttr)
        self.checks = LiveMigrationChecks(hostname, host, paths, disk_info)
        self.pre = PreMigration(hostname, lv_conf, paths, image_cache, plug_vifs)
        self.source = SourceMigration(conf, lv_conf, hostname, host, paths, lookup)
        self.post = PostMigration(hostname, host, paths, find, unplug_vifs)
        self.rollback = Rollback(hostname, paths, find, unplug_vifs)

    # -- checks --------------------------------------------------------------------------

    def check_can_live_migrate_destination(
        self, context: RequestContext, instance: Instance, src_resources: HostResources,
        dst_resources: HostResources, block_migration: bool | None = None,
        disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        return self.checks.check_can_live_migrate_destination(
            context, instance, src_resources, dst_resources, block_migration,
            disk_over_commit)

    def cleanup_live_migration_destination_check(
        self, context: RequestContext, dest_check_data: LiveMigrateData
    ) -> None:
        self.checks.cleanup_live_migration_destination_check(context, dest_check_data)

    def check_can_live_migrate_source(
        self, context: RequestContext, instance: Instance, dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
        return self.checks.check_can_live_migrate_source(context, instance, dest_check_data)

    # -- destination before, source during -----------------------------------------------

    def pre_live_migration(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None, migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        return self.pre.pre_live_migration(context, instance, network_info, disk_info,
                                           migrate_data)

    def live_migration(
        self, context: RequestContext, instance: Instance, dest: str,
        post_method: PostMethod, recover_method: RecoverMethod, block_migration: bool = False,
        migrate_data: LiveMigrateData | None = None, migration: Migration | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.source.live_migration(context, instance, dest, post_method, recover_method,
                                   block_migration, migrate_data, migration, progress)

    def live_migration_abort(self, instance: Instance) -> None:
        self.source.live_migration_abort(instance)

    def live_migration_force_complete(self, instance: Instance) -> None:
        self.source.live_migration_force_complete(instance)

    # -- after success -------------------------------------------------------------------

    def post_live_migration(
        self, context: RequestContext, instance: Instance,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        self.post.post_live_migration(context, instance, migrate_data)

    def post_live_migration_at_source(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo
    ) -> None:
        self.post.post_live_migration_at_source(context, instance, network_info)

    def post_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        block_migration: bool = False,
    ) -> None:
        self.post.post_live_migration_at_destination(context, instance, network_info,
                                                     block_migration)

    # -- after failure -------------------------------------------------------------------

    def rollback_live_migration_at_source(
        self, context: RequestContext, instance: Instance, migrate_data: LiveMigrateData
    ) -> None:
        self.rollback.rollback_live_migration_at_source(context, instance, migrate_data)

    def rollback_live_migration_at_destination(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
        destroy_disks: bool = True, migrate_data: LiveMigrateData | None = None,
    ) -> None:
        self.rollback.rollback_live_migration_at_destination(
            context, instance, network_info, destroy_disks, migrate_data)
