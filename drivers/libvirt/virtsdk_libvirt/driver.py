"""Placeholder; the libvirt driver is being written."""

import libvirt  # noqa: F401 - the driver needs libvirt-python

from virtsdk.driver import ComputeDriver


class LibvirtDriver(ComputeDriver):  # pragma: no cover - replaced
    """libvirt/QEMU driver (in progress)."""
