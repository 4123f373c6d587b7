"""The fake driver's live-migration data that crosses hosts (typed, versioned).

Defining :class:`FakeLiveMigrateData` registers it with the RPC serializer of
:mod:`virtsdk.objects` when the driver loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from virtsdk.objects import LiveMigrateData


@dataclass
class FakeLiveMigrateData(LiveMigrateData):
    """:class:`~virtsdk.objects.LiveMigrateData` plus the fake driver's bookkeeping.

    Version history: 1.0 first version.
    """

    VERSION: ClassVar[str] = "1.0"

    #: the fabric (the simulated cloud) the destination check ran in
    fabric: str = ""
    #: the host that ran the destination check
    checked_on: str = ""
    #: the host that ran ``pre_live_migration``
    prepared_on: str = ""
