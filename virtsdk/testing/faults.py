"""Faults a driver's own conformance run can arm, for the kit's optional hooks.

:func:`cut_disk_transfer` is a ready ``fail_disk_transfer`` hook for every driver whose
``migrate_disk_and_power_off`` reports transfer progress through its ``progress``
argument (the shared disk transports do)::

    @pytest.fixture
    def fail_disk_transfer(self, monkeypatch):
        return cut_disk_transfer(monkeypatch)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import InjectedFault
from virtsdk.objects import Instance, TransferProgress


def cut_disk_transfer(monkeypatch: pytest.MonkeyPatch
                      ) -> Callable[[ComputeDriver, Instance], None]:
    """A hook that arms a driver: its next ``migrate_disk_and_power_off`` fails at the
    first progress report of an unfinished transfer (a real transfer, cut half way).
    ``monkeypatch`` undoes the arming at the end of the test."""

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
