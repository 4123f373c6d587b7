"""Disk image files with ``qemu-img``: the SDK's :mod:`virtsdk.localdisk.images`."""

from virtsdk.localdisk.images import *  # noqa: F403
from virtsdk.localdisk.images import __all__  # noqa: F401
