"""Host filters: each one says whether a host can take a request.

Called by :class:`virtsdk.scheduler.filter_scheduler.FilterScheduler` for every
candidate host, in the order of ``[scheduler] enabled_filters``.  A filter never
changes anything; it only answers yes or no.
"""

from __future__ import annotations

from typing import ClassVar

from oslo_config import cfg

from virtsdk.resources import AllocationRatios, Resource, fits
from virtsdk.scheduler.base import HostState, RequestSpec


class BaseFilter:
    """One yes/no test of a host against a request."""

    name: ClassVar[str] = "BaseFilter"

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        raise NotImplementedError


class ComputeFilter(BaseFilter):
    """The host's compute service is up (recent heartbeat) and enabled."""

    name = "ComputeFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return host.is_up and not host.disabled


class IgnoreHostsFilter(BaseFilter):
    """The host is not in ``ignore_hosts`` and, if ``force_hosts`` is set, is in it."""

    name = "IgnoreHostsFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        if host.host in spec.ignore_hosts:
            return False
        return not spec.force_hosts or host.host in spec.force_hosts


class _FitFilter(BaseFilter):
    """The flavor's claim on one resource fits (:func:`virtsdk.resources.fits`)."""

    resource: ClassVar[Resource]

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return fits(host.resources, spec.flavor, AllocationRatios.from_conf(self.conf),
                    self.resource)


class RamFilter(_FitFilter):
    """Free RAM (times ``ram_allocation_ratio``) holds the flavor's memory."""

    name = "RamFilter"
    resource = Resource.RAM


class CoreFilter(_FitFilter):
    """Free vCPUs (times ``cpu_allocation_ratio``) hold the flavor's vCPUs."""

    name = "CoreFilter"
    resource = Resource.VCPUS


class DiskFilter(_FitFilter):
    """Free local disk (times ``disk_allocation_ratio``) holds root + ephemeral."""

    name = "DiskFilter"
    resource = Resource.DISK


ALL_FILTERS: dict[str, type[BaseFilter]] = {
    cls.name: cls for cls in (ComputeFilter, IgnoreHostsFilter, RamFilter, CoreFilter,
                              DiskFilter)
}
