"""The driver conformance kit (virtsdk.testing.DriverConformance) run against the QEMU
driver on the real lab: two hosts in network namespaces, QEMU started in each host's
namespace, no libvirtd involved.

The contract guest is the lab's test guest with a 2 GiB root disk (the kit's shrink
to 1 GiB is a real one; a root size 0 would mean "the image's size").  The lab's
instance paths are not shared: its live migrations are block migrations.  A 1 MiB/s
bandwidth cap holds a live migration running for the abort and force-complete checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from virtsdk.driver import ComputeDriver
from virtsdk.objects import Flavor, ImageMeta, Instance
from virtsdk.testing import DriverConformance
from virtsdk.testing.faults import cut_disk_transfer

from .qemu_lab import clean_qemu_dir, make_qemu_driver

pytestmark = pytest.mark.lab


class TestQemuDriverContract(DriverConformance):
    @pytest.fixture
    def driver_factory(self, lab: Any) -> Iterator[Callable[[str], ComputeDriver]]:
        hosts = {h.name: h for h in lab.hosts}
        made: list[Any] = []

        def factory(name: str) -> ComputeDriver:
            drv = make_qemu_driver(hosts[name], **{"live_migration.monitor_interval": 0.2})
            made.append(drv)
            return drv

        yield factory
        for drv in made:
            clean_qemu_dir(drv.paths.root)

    @pytest.fixture
    def contract_hosts(self, lab: Any) -> tuple[str, str]:
        return (lab.hosts[0].name, lab.hosts[1].name)

    @pytest.fixture
    def contract_flavor(self) -> Flavor:
        return Flavor("contract.small", memory_mb=96, vcpus=1, root_gb=2)

    @pytest.fixture
    def contract_bigger_flavor(self) -> Flavor:
        return Flavor("contract.big", memory_mb=128, vcpus=1, root_gb=3)

    @pytest.fixture
    def contract_image(self, guest_meta: ImageMeta) -> ImageMeta:
        return guest_meta

    @pytest.fixture
    def slow_live_migration(self) -> Callable[[ComputeDriver, Instance], None]:
        def slow(driver: ComputeDriver, instance: Instance) -> None:
            driver.conf.set_override("bandwidth", 1, "live_migration")
        return slow

    @pytest.fixture
    def fail_disk_transfer(self, monkeypatch: pytest.MonkeyPatch
                           ) -> Callable[[ComputeDriver, Instance], None]:
        """Cut the next transfer from the driver after its first progress report."""
        return cut_disk_transfer(monkeypatch)
