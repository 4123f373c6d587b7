"""The qemu driver's live-migration data that crosses hosts (typed, versioned).

Defining :class:`QemuLiveMigrateData` registers it with the RPC serializer of
:mod:`virtsdk.objects` when the driver loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from virtsdk.objects import LiveMigrateData


@dataclass
class QemuLiveMigrateData(LiveMigrateData):
    """:class:`~virtsdk.objects.LiveMigrateData` plus what ``pre_live_migration`` on
    the destination tells the source (validated by the source before use).

    Version history: 1.0 first version; 2.0 the NBD exports as typed fields
    (``nbd_host``, ``nbd_port``, ``nbd_targets``) instead of an untyped ``nbd`` dict.
    """

    VERSION: ClassVar[str] = "2.0"

    #: the ``tcp:host:port`` URI the destination's incoming QEMU listens on
    uri: str = ""
    #: block migration: the address the destination's NBD server listens on
    nbd_host: str = ""
    #: block migration: its port (0: no block migration)
    nbd_port: int = 0
    #: block migration: the exported disks, by target name (``vda``, ...)
    nbd_targets: list[str] = field(default_factory=list)
