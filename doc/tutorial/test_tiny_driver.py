"""The tutorial's conformance test file, as a driver author keeps it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tiny_driver import TinyDriver

from virtsdk.driver import ComputeDriver
from virtsdk.testing import DriverConformance


class TestTinyDriver(DriverConformance):
    @pytest.fixture
    def driver_factory(self) -> Callable[[str], ComputeDriver]:
        return lambda host: TinyDriver(None, host)  # type: ignore[arg-type]
