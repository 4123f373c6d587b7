"""Placeholder; the fake driver is being written."""

from virtsdk.driver import ComputeDriver


class FakeDriver(ComputeDriver):  # pragma: no cover - replaced
    """In-memory hypervisor (in progress)."""
