"""Shared fixtures of the whole suite.

``lab`` (session: two real libvirt hosts in network namespaces) and ``guest_image``
(session: the cached test guest) come from the lab's pytest plugin; see
:mod:`virtsdk_lab.fixtures`.  Tests that use the lab carry ``@pytest.mark.lab``.

``rabbit`` / ``rabbit_url`` and ``postgres`` / ``postgres_url`` (a private RabbitMQ node
and PostgreSQL cluster started by the tests, see :mod:`virtsdk.testing.services`).

``cut_disk_transfer``: the conformance kit's ``fail_disk_transfer`` hook for drivers
whose ``migrate_disk_and_power_off`` reports transfer progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import InjectedFault
from virtsdk.objects import Instance, TransferProgress

pytest_plugins = ("virtsdk_lab.fixtures", "virtsdk.testing.services")


@pytest.fixture
def cut_disk_transfer(monkeypatch: pytest.MonkeyPatch
                      ) -> Callable[[ComputeDriver, Instance], None]:
    """Arm a driver: its next ``migrate_disk_and_power_off`` fails at the first
    progress report of an unfinished transfer (a real transfer, cut half way)."""

    def arm(driver: ComputeDriver, inst: Instance) -> None:
        original = driver.migrate_disk_and_power_off

        def cut(*args: Any, **kwargs: Any) -> Any:
            def progress(p: TransferProgress) -> None:
                if p.bytes_done < p.bytes_total:
                    raise InjectedFault(f"transfer cut after {p.bytes_done} bytes")

            kwargs["progress"] = progress
            return original(*args, **kwargs)

        monkeypatch.setattr(driver, "migrate_disk_and_power_off", cut)

    return arm
