"""Live migration for the libvirt driver.

:class:`LiveMigrationMixin` is mixed into :class:`virtsdk_libvirt.driver.LibvirtDriver`
(``LibvirtDriver(LiveMigrationMixin, ComputeDriver)``) and brings every live-migration
method of :class:`virtsdk.driver.ComputeDriver`, each in its own module:

* :mod:`.checks` - ``check_can_live_migrate_destination`` / ``_source``,
  ``cleanup_live_migration_destination_check`` (destination, source, destination);
* :mod:`.pre` - ``pre_live_migration`` (destination);
* :mod:`.source` - ``live_migration``, ``live_migration_abort``,
  ``live_migration_force_complete`` (source), using :mod:`.xml_rewrite` (destination
  XML), :mod:`.migrate` (flags, parameters, ``migrateToURI3`` and its legacy fallback)
  and :mod:`.job` (the running job as a ``MigrationJob`` for the shared monitor);
* :mod:`.post` / :mod:`.rollback` - cleanup after success or failure on both hosts;
* :mod:`.opts` - the ``[libvirt] live_migration_*`` options.

The data this driver carries between the hosts is
:class:`virtsdk_libvirt.migrate_data.LibvirtLiveMigrateData` (typed, versioned): the
source's and the destination's instance directory and image cache, and after success
the measured downtime, bytes transferred and the libvirt call used.

The mixin relies on the driver's helper API (``lv_conf``, ``_host``, ``_paths``,
``_image_cache``, ``_lookup``, ``_find``, ``get_instance_disk_info``, ``plug_vifs``,
``unplug_vifs``), documented in :mod:`virtsdk_libvirt.driver`.
"""

from __future__ import annotations

from typing import ClassVar

from virtsdk_libvirt.live.checks import CheckMixin
from virtsdk_libvirt.live.post import PostMigrationMixin
from virtsdk_libvirt.live.pre import PreMigrationMixin
from virtsdk_libvirt.live.rollback import RollbackMixin
from virtsdk_libvirt.live.source import SourceMigrationMixin


class LiveMigrationMixin(
    CheckMixin, PreMigrationMixin, SourceMigrationMixin, PostMigrationMixin, RollbackMixin
):
    """Every live-migration method of the libvirt driver (see the module docstring)."""

    LIVE_CAPABILITIES: ClassVar[dict[str, bool]] = {
        "supports_live_migration": True,
        "supports_block_migration": True,
        "supports_live_migration_abort": True,
        "supports_live_migration_force_complete": True,
        "supports_post_copy": True,
        "supports_auto_converge": True,
        "supports_shared_storage_detection": True,
    }
