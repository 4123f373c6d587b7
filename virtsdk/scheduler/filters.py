"""Host filters: each one says whether a host can take a request.

Called by :class:`virtsdk.scheduler.filter_scheduler.FilterScheduler` for every
candidate host, in the order of ``[scheduler] enabled_filters``.  A filter never
changes anything; it only answers yes or no.
"""

from __future__ import annotations

from typing import ClassVar

from oslo_config import cfg

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


class RamFilter(BaseFilter):
    """Free RAM (times ``ram_allocation_ratio``) holds the flavor's memory."""

    name = "RamFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        res = host.resources
        limit = res.memory_mb * self.conf.scheduler.ram_allocation_ratio
        return limit - res.memory_mb_used >= spec.flavor.memory_mb


class CoreFilter(BaseFilter):
    """Free vCPUs (times ``cpu_allocation_ratio``) hold the flavor's vCPUs."""

    name = "CoreFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        res = host.resources
        limit = res.vcpus * self.conf.scheduler.cpu_allocation_ratio
        return limit - res.vcpus_used >= spec.flavor.vcpus


class DiskFilter(BaseFilter):
    """Free local disk (times ``disk_allocation_ratio``) holds root + ephemeral."""

    name = "DiskFilter"

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        res = host.resources
        limit = res.local_gb * self.conf.scheduler.disk_allocation_ratio
        need = spec.flavor.root_gb + spec.flavor.ephemeral_gb
        return limit - res.local_gb_used >= need


ALL_FILTERS: dict[str, type[BaseFilter]] = {
    cls.name: cls for cls in (ComputeFilter, IgnoreHostsFilter, RamFilter, CoreFilter,
                              DiskFilter)
}
