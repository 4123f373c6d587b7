"""After a successful live migration: clean up the source, settle the destination.

The source compute manager calls, in order, :meth:`PostMigration.post_live_migration`
(source: the domain left this host; its instance directory is removed unless it is
shared with the destination), ``post_live_migration_at_destination`` (destination, by
RPC: the domain is persistent and running, the incoming marker is gone) and
:meth:`PostMigration.post_live_migration_at_source` (source: VIFs unplugged).
Each step is idempotent, so a retried call after a crash does no harm.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

import libvirt

from virtsdk.context import RequestContext
from virtsdk.objects import Instance, LiveMigrateData, NetworkInfo
from virtsdk_libvirt.guest import Guest
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.live_migration.pre import INCOMING_MARKER
from virtsdk_libvirt.paths import InstancePaths

LOG = logging.getLogger(__name__)


class PostMigration:
    """The steps after a successful live migration on either host: this host's name
    (for messages), its libvirt :class:`Host` (to define the arrived domain), its
    instance paths, and the driver's domain lookup and VIF unplugging."""

    def __init__(
        self,
        hostname: str,
        host: Host,
        paths: InstancePaths,
        find: Callable[[Instance], libvirt.virDomain | None],
        unplug_vifs: Callable[[Instance, NetworkInfo], None],
    ) -> None:
        self.host = hostname
        self._host = host
        self._paths = paths
        self._find = find
        self._unplug_vifs = unplug_vifs

    def post_live_migration(
        self,
        context: RequestContext,
        instance: Instance,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Source host, after success: remove what the instance left here.

        A domain still defined here (only if UNDEFINE_SOURCE was not honoured) is
        undefined, never a running one: a running domain means the guest did not
        leave, and then nothing is removed.  The instance directory goes unless the
        instance path is shared with the destination.
        """
        dom = self._find(instance)
        if dom is not None:
            guest = Guest(dom)
            if guest.is_active():
                LOG.error("post_live_migration: %s still runs on %s; keeping its files",
                          instance.uuid, self.host)
                return
            guest.undefine()
        if migrate_data is not None and migrate_data.is_shared_instance_path:
            return
        shutil.rmtree(self._paths.instance_dir(instance), ignore_errors=True)

    def post_live_migration_at_source(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo
    ) -> None:
        """Source host, after success: unplug the instance's VIFs here."""
        self._unplug_vifs(instance, network_info)

    def post_live_migration_at_destination(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        block_migration: bool = False,
    ) -> None:
        """Destination host, after success: the instance is this host's.

        The domain is persistent (PERSIST_DEST) and running (a guest paused by
        ``live_migration_force_complete`` is resumed); the incoming marker of
        ``pre_live_migration`` is removed so a later rollback can never delete the
        directory.
        """
        (self._paths.instance_dir(instance) / INCOMING_MARKER).unlink(missing_ok=True)
        dom = self._find(instance)
        if dom is None:
            LOG.error("post_live_migration_at_destination: %s is not on %s",
                      instance.uuid, self.host)
            return
        if not dom.isPersistent():
            self._host.define(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
        state, reason = dom.state()
        if state == libvirt.VIR_DOMAIN_PAUSED and reason in (
            libvirt.VIR_DOMAIN_PAUSED_USER, libvirt.VIR_DOMAIN_PAUSED_MIGRATION
        ):
            LOG.info("resuming %s after a forced completion", instance.uuid)
            dom.resume()
