"""The local disks of an instance, as libvirt devices.

The layout (``disk`` -> ``vda``, ``disk.local`` -> ``vdb``, ``disk.swap`` -> ``vdc``),
creation, growth and description of the files are the SDK's
:mod:`virtsdk.localdisk.disks`; this module adds the libvirt device specs.
"""

from __future__ import annotations

from virtsdk.localdisk.disks import (
    EPHEMERAL,
    MIGRATED,
    ROOT,
    SWAP,
    TARGETS,
    GiB,
    MiB,
    check_no_shrink,
    flavor_sizes,
    supports_direct_io,
)
from virtsdk.localdisk.disks import LocalDisks as _LocalDisks
from virtsdk.objects import Instance
from virtsdk_libvirt.guest_config import DiskSpec

__all__ = ["EPHEMERAL", "MIGRATED", "ROOT", "SWAP", "TARGETS", "GiB", "LibvirtLocalDisks", "MiB",
           "check_no_shrink", "flavor_sizes", "supports_direct_io"]


class LibvirtLocalDisks(_LocalDisks):
    """:class:`virtsdk.localdisk.disks.LocalDisks` with libvirt disk specs."""

    def specs(self, instance: Instance) -> list[DiskSpec]:
        """Device specs of the disks in the instance directory (format probed)."""
        return [DiskSpec(path=str(path), fmt=fmt, target=target)
                for target, path, fmt in self.formats(instance)]
