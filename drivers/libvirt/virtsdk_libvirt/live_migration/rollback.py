"""After a failed live migration: the guest runs on the source, the destination is
left clean.

The source compute manager calls :meth:`Rollback.rollback_live_migration_at_source`
(source: the guest keeps running; one paused by a forced completion is resumed) and
:meth:`Rollback.rollback_live_migration_at_destination` (destination, by RPC:
removes any half-created domain, the directory ``pre_live_migration`` created and
the VIFs it plugged).  Idempotent; never touches a directory this host had before
the migration.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

import libvirt

from virtsdk.context import RequestContext
from virtsdk.objects import Instance, LiveMigrateData, NetworkInfo
from virtsdk_libvirt.guest import Guest
from virtsdk_libvirt.live_migration.pre import INCOMING_MARKER
from virtsdk_libvirt.paths import InstancePaths

LOG = logging.getLogger(__name__)


class Rollback:
    """The steps after a failed live migration on either host: this host's name (for
    messages), its instance paths, and the driver's domain lookup and VIF unplugging."""

    def __init__(
        self,
        hostname: str,
        paths: InstancePaths,
        find: Callable[[Instance], libvirt.virDomain | None],
        unplug_vifs: Callable[[Instance, NetworkInfo], None],
    ) -> None:
        self.host = hostname
        self._paths = paths
        self._find = find
        self._unplug_vifs = unplug_vifs

    def rollback_live_migration_at_source(
        self, context: RequestContext, instance: Instance, migrate_data: LiveMigrateData
    ) -> None:
        """Source host, after failure: the guest keeps running here.  Resumes it if a
        forced completion paused it; never touches its files."""
        dom = self._find(instance)
        if dom is None:
            LOG.error("rollback at source: %s is not defined on %s", instance.uuid, self.host)
            return
        state, reason = dom.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and reason in (
            libvirt.VIR_DOMAIN_PAUSED_USER, libvirt.VIR_DOMAIN_PAUSED_MIGRATION
        ):
            LOG.info("resuming %s after a failed migration", instance.uuid)
            dom.resume()

    def rollback_live_migration_at_destination(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Destination host, after failure: destroy and undefine a domain of the
        instance left here, unplug its VIFs and remove the instance directory if
        ``pre_live_migration`` created it (its marker file is there) and
        ``destroy_disks``.  A shared instance directory is never removed."""
        dom = self._find(instance)
        if dom is not None:
            LOG.warning("rollback at destination: removing half-created domain of %s",
                        instance.uuid)
            guest = Guest(dom)
            guest.force_off()
            guest.undefine()
        try:
            self._unplug_vifs(instance, network_info)
        except Exception:  # cleanup goes on
            LOG.exception("rollback at destination: unplugging VIFs of %s failed",
                          instance.uuid)
        shared = migrate_data is not None and bool(migrate_data.is_shared_instance_path)
        inst_dir = self._paths.instance_dir(instance)
        if destroy_disks and not shared and (inst_dir / INCOMING_MARKER).exists():
            shutil.rmtree(inst_dir, ignore_errors=True)
