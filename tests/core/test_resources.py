"""The one "does the flavor fit" rule shared by the scheduler and the compute claim."""

from virtsdk.db.records import HostUsage
from virtsdk.objects import Flavor, HostResources
from virtsdk.resources import AllocationRatios, Resource, fits, shortfalls, with_usage

HOST = HostResources(hostname="h", vcpus=4, memory_mb=4096, local_gb=40)
SMALL = Flavor(name="small", memory_mb=1024, vcpus=1, root_gb=10, ephemeral_gb=0)


def test_fits_on_an_empty_host_and_exactly_at_the_limit():
    assert fits(HOST, SMALL, AllocationRatios())
    full = with_usage(HOST, HostUsage(vcpus=3, memory_mb=3072, disk_gb=30))
    assert shortfalls(full, SMALL, AllocationRatios()) == []


def test_names_each_resource_it_lacks():
    used = with_usage(HOST, HostUsage(vcpus=4, memory_mb=3584, disk_gb=35))
    assert shortfalls(used, SMALL, AllocationRatios()) == [
        Resource.RAM, Resource.VCPUS, Resource.DISK]
    assert not fits(used, SMALL, AllocationRatios(), Resource.RAM)
    assert ", ".join(shortfalls(used, SMALL, AllocationRatios())) == "RAM, vCPUs, disk"


def test_allocation_ratios_overcommit():
    used = with_usage(HOST, HostUsage(vcpus=4, memory_mb=0, disk_gb=0))
    assert not fits(used, SMALL, AllocationRatios(), Resource.VCPUS)
    assert fits(used, SMALL, AllocationRatios(cpu=2.0), Resource.VCPUS)


def test_with_usage_leaves_the_capacity_alone():
    used = with_usage(HOST, HostUsage(vcpus=1, memory_mb=2, disk_gb=3))
    assert (used.vcpus_used, used.memory_mb_used, used.local_gb_used) == (1, 2, 3)
    assert HOST.vcpus_used == 0
