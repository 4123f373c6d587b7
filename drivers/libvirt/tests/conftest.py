"""Fixtures of the libvirt driver tests (helpers: :mod:`.libvirt_lab`).

``lab_drivers`` yields one driver per lab host and afterwards destroys every domain
left on the lab hosts and empties their instance directories (the live-migration tests
reuse both); ``libvirt_cloud`` is an embedded cloud with one libvirt compute per lab host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from virtsdk_libvirt.driver import LibvirtDriver

from .libvirt_lab import clean_lab_host, lab_cloud, make_driver


@pytest.fixture
def lab_drivers(lab: Any) -> Iterator[list[LibvirtDriver]]:
    """One LibvirtDriver per lab host; leftovers are removed afterwards."""
    drivers = [make_driver(h) for h in lab.hosts]
    try:
        yield drivers
    finally:
        for driver in drivers:
            driver.cleanup_host(driver.host)
        for host in lab.hosts:
            clean_lab_host(host)


@pytest.fixture
def libvirt_cloud(lab: Any, lab_drivers: Any) -> Iterator[Any]:
    """API + conductor + one libvirt compute service per lab host (an EmbeddedCloud
    whose hosts differ only in ``[libvirt]``).  ``lab_drivers`` only for its clean-up
    of the lab hosts afterwards."""
    cloud = lab_cloud(lab)
    try:
        yield cloud
    finally:
        cloud.stop()
