"""The libvirt driver's live-migration data that crosses hosts (typed, versioned).

Defining :class:`LibvirtLiveMigrateData` registers it with the RPC serializer of
:mod:`virtsdk.objects` when the driver loads; a process without the driver forwards
it unchanged as a :class:`virtsdk.objects.LiveMigrateData`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from virtsdk.objects import LiveMigrateData


@dataclass
class LibvirtLiveMigrateData(LiveMigrateData):
    """:class:`~virtsdk.objects.LiveMigrateData` plus what the libvirt driver carries.

    The directories cross hosts and are validated by the receiver before use
    (normal absolute paths; the instance directory named after the instance).

    Version history: 1.0 first version.
    """

    VERSION: ClassVar[str] = "1.0"

    #: the instance directory on the source (``check_can_live_migrate_source``)
    source_instance_dir: str = ""
    #: the image cache on the source (``check_can_live_migrate_source``)
    source_image_cache: str = ""
    #: the instance directory on the destination (``pre_live_migration``)
    dest_instance_dir: str = ""
    #: the image cache on the destination (``pre_live_migration``)
    dest_image_cache: str = ""
    #: after success: the downtime QEMU measured (ms); None when none was measured
    downtime_ms: int | None = None
    #: after success: bytes the migration transferred (libvirt's data_processed)
    data_processed: int = 0
    #: after success: the libvirt call that ran (``migrateToURI3`` or ``migrateToURI``)
    migration_call: str = ""
