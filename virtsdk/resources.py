"""Does a flavor fit on a host: the one piece of capacity arithmetic.

Who calls it: the scheduler's RAM / core / disk filters (for every candidate host)
and the compute manager's claim (on the destination, under its resource lock), so
the scheduler and the host that finally claims answer the same question the same way.

A host's limit for each resource is its capacity times the ``[scheduler]``
allocation ratio; the flavor fits when what is already claimed plus what the flavor
needs stays within that limit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from oslo_config import cfg

from virtsdk.db.records import HostUsage
from virtsdk.objects import Flavor, HostResources


class Resource(enum.StrEnum):
    """The resources a flavor claims (the value is how errors name them)."""

    RAM = "RAM"
    VCPUS = "vCPUs"
    DISK = "disk"


@dataclass(frozen=True)
class AllocationRatios:
    """How far each resource may be overcommitted (1.0: not at all)."""

    ram: float = 1.0
    cpu: float = 1.0
    disk: float = 1.0

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> AllocationRatios:
        """The ratios of ``[scheduler] {ram,cpu,disk}_allocation_ratio``."""
        sched = conf.scheduler
        return cls(ram=sched.ram_allocation_ratio, cpu=sched.cpu_allocation_ratio,
                   disk=sched.disk_allocation_ratio)


def with_usage(capacity: HostResources, usage: HostUsage) -> HostResources:
    """A copy of ``capacity`` whose ``*_used`` fields are what ``usage`` claims."""
    res = capacity.copy()
    res.vcpus_used = usage.vcpus
    res.memory_mb_used = usage.memory_mb
    res.local_gb_used = usage.disk_gb
    return res


def shortfalls(host: HostResources, flavor: Flavor,
               ratios: AllocationRatios) -> list[Resource]:
    """The resources ``host`` (capacity and ``*_used`` claims) lacks for ``flavor``;
    empty when it fits."""
    short = []
    if host.memory_mb_used + flavor.memory_mb > host.memory_mb * ratios.ram:
        short.append(Resource.RAM)
    if host.vcpus_used + flavor.vcpus > host.vcpus * ratios.cpu:
        short.append(Resource.VCPUS)
    if host.local_gb_used + flavor.root_gb + flavor.ephemeral_gb > host.local_gb * ratios.disk:
        short.append(Resource.DISK)
    return short


def fits(host: HostResources, flavor: Flavor, ratios: AllocationRatios,
         resource: Resource | None = None) -> bool:
    """Whether ``flavor`` fits on ``host`` (only ``resource`` when given)."""
    short = shortfalls(host, flavor, ratios)
    return resource not in short if resource is not None else not short
