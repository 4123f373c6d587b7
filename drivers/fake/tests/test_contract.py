"""The conformance kit, run against the fake driver."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from oslo_config import cfg
from virtsdk_fake.driver import FakeDriver
from virtsdk_fake.fabric import Fabric

from virtsdk.driver import ComputeDriver
from virtsdk.objects import Instance
from virtsdk.testing import DriverConformance


class TestFakeDriverConformance(DriverConformance):
    @pytest.fixture
    def driver_factory(self, make_driver: Callable[[str], FakeDriver]
                       ) -> Callable[[str], ComputeDriver]:
        return make_driver

    @pytest.fixture
    def slow_live_migration(self, fabric: Fabric, conf: cfg.ConfigOpts
                            ) -> Callable[[ComputeDriver, Instance], None]:
        def slow(driver: ComputeDriver, inst: Instance) -> None:
            # a 16 MiB/s cap, dirtying at 64 MiB/s and no completion timeout: the
            # migration runs (in simulated time) until it is aborted
            conf.set_override("bandwidth", 16, group="live_migration")
            conf.set_override("completion_timeout", 0, group="live_migration")
            fabric.set_migration_params(inst.uuid, dirty_rate_mbps=64)

        return slow

    @pytest.fixture
    def fail_disk_transfer(self, fabric: Fabric) -> Callable[[ComputeDriver, Instance], None]:
        def fail(driver: ComputeDriver, inst: Instance) -> None:
            fabric.faults.inject("migrate_disk.transfer", driver.host)

        return fail
