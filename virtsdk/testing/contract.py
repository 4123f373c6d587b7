"""Former name of the conformance kit: :class:`DriverContractTests` is
:class:`virtsdk.testing.conformance.DriverConformance`."""

from __future__ import annotations

from virtsdk.testing.conformance import DriverConformance as DriverContractTests

__all__ = ["DriverContractTests"]
