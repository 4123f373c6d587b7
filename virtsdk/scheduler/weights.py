"""Host weighers: rank the hosts that passed every filter (higher is better).

Called by :class:`virtsdk.scheduler.filter_scheduler.FilterScheduler`; each weigher's
raw weights are normalised to 0..1 over the candidates and summed with its
multiplier, so weighers with different units combine.
"""

from __future__ import annotations

from typing import ClassVar

from virtsdk.scheduler.base import HostState, RequestSpec


class BaseWeigher:
    name: ClassVar[str] = "BaseWeigher"
    multiplier: ClassVar[float] = 1.0

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        raise NotImplementedError


class RamWeigher(BaseWeigher):
    """Prefer the host with the most free RAM (spreads instances)."""

    name = "RamWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.resources.free_ram_mb)


class CPUWeigher(BaseWeigher):
    """Prefer the host with the most free vCPUs."""

    name = "CPUWeigher"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return float(host.resources.free_vcpus)


ALL_WEIGHERS: dict[str, type[BaseWeigher]] = {
    cls.name: cls for cls in (RamWeigher, CPUWeigher)
}


def normalise(values: list[float]) -> list[float]:
    """Scale to 0..1 (all equal -> all 0)."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]
