"""Helpers of the fake driver tests: two flavors and the guest fingerprints that show
whether memory and disks survived a move."""

from __future__ import annotations

from virtsdk_fake.fabric import Fabric

from virtsdk.objects import Flavor, Instance

SMALL = Flavor("m1.small", memory_mb=512, vcpus=1, root_gb=1)
BIG = Flavor("m1.big", memory_mb=1024, vcpus=2, root_gb=2, ephemeral_gb=1, swap_mb=256)


def fill(fabric: Fabric, host: str, inst: Instance) -> dict[str, str]:
    """Write recognisable bytes into the guest's memory and every disk; return the
    guest's fingerprint."""
    guest = fabric.host(host).instances[inst.uuid]
    guest.write_memory(0, b"MEM-START" + inst.uuid.encode())
    guest.write_memory(len(guest.memory) - 8, b"MEM-END!")
    for n, disk in guest.disks.items():
        disk.write(disk.size // 2, f"{n}:{inst.uuid}".encode() * 100)
        disk.write(disk.size - 5, b"TAIL!")
    return guest.fingerprint()


def disks_only(fingerprint: dict[str, str]) -> dict[str, str]:
    """The root and ephemeral disks of a fingerprint: memory does not survive a
    power-off and swap is recreated by a cold migration."""
    return {k: v for k, v in fingerprint.items()
            if k.startswith("disk:") and k != "disk:disk.swap"}
