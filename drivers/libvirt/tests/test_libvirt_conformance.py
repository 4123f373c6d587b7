"""The conformance kit, run against the libvirt driver on the real two-host lab.

The same outcome checks as for the fake driver (:class:`virtsdk.testing.DriverConformance`):
real domains, real disk bytes read back through QEMU, real files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from virtsdk_libvirt.driver import LibvirtDriver

from virtsdk.driver import ComputeDriver
from virtsdk.objects import Flavor, ImageMeta, Instance
from virtsdk.testing import DriverConformance
from virtsdk.testing.faults import cut_disk_transfer

pytestmark = pytest.mark.lab


class TestLibvirtConformance(DriverConformance):
    @pytest.fixture
    def driver_factory(self, lab_drivers: list[LibvirtDriver]
                       ) -> Callable[[str], ComputeDriver]:
        by_host = {d.host: d for d in lab_drivers}
        return lambda host: by_host[host]

    @pytest.fixture
    def contract_hosts(self, lab: Any) -> tuple[str, str]:
        return (lab.hosts[0].name, lab.hosts[1].name)

    @pytest.fixture
    def contract_flavor(self) -> Flavor:
        return Flavor("contract.small", memory_mb=128, vcpus=1, root_gb=2)

    @pytest.fixture
    def contract_bigger_flavor(self) -> Flavor:
        return Flavor("contract.big", memory_mb=128, vcpus=1, root_gb=3)

    @pytest.fixture
    def contract_image(self, guest_image: Any) -> ImageMeta:
        return ImageMeta(id=f"vsdk-guest-{guest_image.key}", name="vsdk test guest",
                         properties={"kernel": str(guest_image.kernel),
                                     "initrd": str(guest_image.initrd),
                                     "cmdline": guest_image.cmdline()})

    @pytest.fixture
    def slow_live_migration(self) -> Callable[[ComputeDriver, Instance], None]:
        """Cap the source's migration bandwidth at 1 MiB/s: the migration is still
        running when the kit aborts or forces it."""

        def slow(driver: ComputeDriver, inst: Instance) -> None:
            driver.conf.set_override("live_migration_bandwidth", 1, group="libvirt")

        return slow

    @pytest.fixture
    def fail_disk_transfer(self, monkeypatch: pytest.MonkeyPatch
                           ) -> Callable[[ComputeDriver, Instance], None]:
        """Cut the next transfer from the driver after its first progress report."""
        return cut_disk_transfer(monkeypatch)


def test_drivers_check_runs_the_four_flows_on_the_lab(lab: Any, lab_drivers: Any,
                                                      guest_image: Any) -> None:
    """``virtsdk drivers check libvirt``'s flows, through an embedded cloud whose hosts
    are the lab's (``lab_drivers`` only for its clean-up of the hosts afterwards)."""
    from virtsdk.cli.flows import check_driver

    from .libvirt_lab import lab_host_overrides

    image = ImageMeta(id=f"vsdk-guest-{guest_image.key}", name="vsdk test guest",
                      properties={"kernel": str(guest_image.kernel),
                                  "initrd": str(guest_image.initrd),
                                  "cmdline": guest_image.cmdline()})
    results = check_driver(
        "libvirt",
        overrides={"compute": {"report_interval": 1.0, "shutdown_timeout": 0}},
        host_overrides=lab_host_overrides(lab),
        hosts=(lab.hosts[0].name, lab.hosts[1].name), image=image)
    assert [(r.flow, r.result) for r in results] == [
        ("cold migration + confirm", "passed"), ("resize + confirm", "passed"),
        ("resize + revert", "passed"), ("live migration", "passed")], results
