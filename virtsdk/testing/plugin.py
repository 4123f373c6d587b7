"""The ``pytest11`` plugin of the driver-author kit (entry point ``virtsdk``).

Installed with virtsdk, so any repository that has virtsdk installed gets it: it asks
pytest to rewrite the assertions of :mod:`virtsdk.testing` (every failed check shows the
values it saw), keeps third-party deprecation notices of virtsdk's dependencies out
of the driver's test report, and names the kit in pytest's header.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("virtsdk.testing.conformance", "virtsdk.testing.observe")


#: third-party notices a driver author can do nothing about (oslo.messaging still
#: imports eventlet); pytest resets the warning filters per test, so say it here too
_QUIET = (
    "ignore::DeprecationWarning:eventlet.*",
    "ignore::DeprecationWarning:oslo_utils.*",
    "ignore::DeprecationWarning:oslo_service.*",
    "ignore::DeprecationWarning:debtcollector.*",
    "ignore:\\s*Eventlet is deprecated",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in _QUIET:
        config.addinivalue_line("filterwarnings", line)


def pytest_report_header(config: pytest.Config) -> str:
    return "virtsdk: driver conformance kit (virtsdk.testing.DriverConformance)"
