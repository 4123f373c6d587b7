"""The qemu driver's live-migration data that crosses hosts (typed, versioned).

Defining :class:`QemuLiveMigrateData` registers it with the RPC serializer of
:mod:`virtsdk.objects` when the driver loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from virtsdk.objects import LiveMigrateData


@dataclass
class QemuLiveMigrateData(LiveMigrateData):
    """:class:`~virtsdk.objects.LiveMigrateData` plus what ``pre_live_migration`` on
    the destination tells the source (validated by the source before use).

    Version history: 1.0 first version.
    """

    VERSION: ClassVar[str] = "1.0"

    #: the ``tcp:host:port`` URI the destination's incoming QEMU listens on
    uri: str = ""
    #: block migration: the destination's NBD exports, ``{"host", "port", "targets"}``
    nbd: dict[str, Any] = field(default_factory=dict)
