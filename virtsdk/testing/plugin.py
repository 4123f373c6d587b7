"""The ``pytest11`` plugin of the driver-author kit (entry point ``virtsdk``).

Installed with virtsdk, so any repository that has virtsdk installed gets it: it asks
pytest to rewrite the assertions of :mod:`virtsdk.testing` (every failed check shows the
values it saw) and names the kit in pytest's header.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("virtsdk.testing.conformance", "virtsdk.testing.observe")


def pytest_report_header(config: pytest.Config) -> str:
    return "virtsdk: driver conformance kit (virtsdk.testing.DriverConformance)"
