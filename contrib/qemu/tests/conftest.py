"""Fixtures of the qemu driver tests (helpers: :mod:`.qemu_lab`).

``qemu_drivers`` yields one driver per lab host and afterwards stops every QEMU the
drivers left and empties their instance directories; ``guest_meta`` is the lab's test
guest as an image.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from virtsdk_qemu.driver import QemuDriver

from virtsdk.objects import ImageMeta

from .qemu_lab import clean_qemu_dir, make_qemu_driver


@pytest.fixture
def qemu_drivers(lab: Any) -> Iterator[list[QemuDriver]]:
    """One QemuDriver per lab host; everything they started is removed afterwards."""
    drivers = [make_qemu_driver(h) for h in lab.hosts]
    try:
        yield drivers
    finally:
        for driver in drivers:
            clean_qemu_dir(driver.paths.root)


@pytest.fixture
def guest_meta(guest_image: Any) -> ImageMeta:
    """The lab's test guest as an image: direct kernel boot, memory checksum on."""
    return ImageMeta(id=f"vsdk-qemu-{guest_image.key}", name="vsdk test guest",
                     properties={"kernel": str(guest_image.kernel),
                                 "initrd": str(guest_image.initrd),
                                 "cmdline": guest_image.cmdline(memcheck_mib=4)})
