"""What a fake instance is made of: real guest memory bytes and sparse disks.

Sizes follow the flavor (a 20 GiB root disk reports 20 GiB), but only bytes that were
written are stored, in fixed-size blocks, so a test can write a pattern into a guest
and check, after any migration, that exactly the same bytes arrived.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from virtsdk.objects import DiskInfo, Flavor
from virtsdk.states import PowerState

BLOCK = 4096
GiB = 1024**3
MiB = 1024**2


class FakeDisk:
    """A sparse in-memory disk image: ``size`` bytes, only written blocks stored."""

    def __init__(self, name: str, size: int) -> None:
        if size < 0:
            raise ValueError(f"disk {name!r}: size must be >= 0")
        self.name = name
        self.size = size
        self.blocks: dict[int, bytes] = {}

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"disk {self.name!r}: range {offset}+{length} outside "
                             f"its {self.size} bytes")

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset`` (the range must lie inside the disk)."""
        self._check(offset, len(data))
        pos = 0
        while pos < len(data):
            index, inner = divmod(offset + pos, BLOCK)
            chunk = data[pos:pos + BLOCK - inner]
            block = bytearray(self.blocks.get(index, bytes(BLOCK)))
            block[inner:inner + len(chunk)] = chunk
            self.blocks[index] = bytes(block)
            pos += len(chunk)

    def read(self, offset: int, length: int) -> bytes:
        """The bytes at ``offset``; never-written bytes read as zeros."""
        self._check(offset, length)
        out = bytearray()
        pos = offset
        while pos < offset + length:
            index, inner = divmod(pos, BLOCK)
            take = min(BLOCK - inner, offset + length - pos)
            out += self.blocks.get(index, bytes(BLOCK))[inner:inner + take]
            pos += take
        return bytes(out)

    @property
    def allocated(self) -> int:
        """Bytes actually stored (what a sparse copy has to move)."""
        return len(self.blocks) * BLOCK

    def grow(self, size: int) -> None:
        if size < self.size:
            raise ValueError(f"disk {self.name!r}: cannot shrink {self.size} -> {size}")
        self.size = size

    def copy(self) -> FakeDisk:
        twin = FakeDisk(self.name, self.size)
        twin.blocks = dict(self.blocks)
        return twin

    def digest(self) -> str:
        """Content hash (size and every non-zero block) for nothing-lost checks."""
        h = hashlib.sha256(f"{self.name}:{self.size}".encode())
        for index in sorted(self.blocks):
            if self.blocks[index].count(0) != BLOCK:
                h.update(index.to_bytes(8, "little"))
                h.update(self.blocks[index])
        return h.hexdigest()

    def info(self) -> DiskInfo:
        return DiskInfo(path=self.name, type="raw", virt_disk_size=self.size,
                        disk_size=self.allocated,
                        over_committed_disk_size=max(0, self.size - self.allocated),
                        checksum=self.digest())


def flavor_disks(flavor: Flavor) -> dict[str, int]:
    """Disk name -> size in bytes for a flavor: root ``disk``, ``disk.local``
    (ephemeral) and ``disk.swap`` when the flavor has them."""
    disks = {"disk": flavor.root_gb * GiB}
    if flavor.ephemeral_gb:
        disks["disk.local"] = flavor.ephemeral_gb * GiB
    if flavor.swap_mb:
        disks["disk.swap"] = flavor.swap_mb * MiB
    return disks


def disks_gb(disks: dict[str, FakeDisk]) -> int:
    """Whole GiB the disks occupy in a host's accounting (virtual sizes, rounded up)."""
    total = sum(d.size for d in disks.values())
    return -(-total // GiB)


@dataclass
class FakeInstance:
    """One guest on one fake host: identity, flavor, power state, memory, disks."""

    uuid: str
    name: str
    flavor: Flavor
    memory: bytearray
    disks: dict[str, FakeDisk]
    power_state: PowerState = PowerState.SHUTDOWN
    metadata: dict[str, str] = field(default_factory=dict)
    persistent: bool = True
    boots: int = 0
    shutdown_requests: int = 0
    last_shutdown: str = ""

    @classmethod
    def build(cls, uuid: str, name: str, flavor: Flavor, kib_per_mb: int,
              metadata: dict[str, str] | None = None) -> FakeInstance:
        return cls(uuid=uuid, name=name, flavor=flavor,
                   memory=bytearray(flavor.memory_mb * kib_per_mb * 1024),
                   disks={n: FakeDisk(n, s) for n, s in flavor_disks(flavor).items()},
                   metadata=dict(metadata or {}))

    # -- test helpers ---------------------------------------------------------------------

    def write_memory(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > len(self.memory):
            raise ValueError(f"memory range {offset}+{len(data)} outside the guest's "
                             f"{len(self.memory)} bytes")
        self.memory[offset:offset + len(data)] = data

    def read_memory(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > len(self.memory):
            raise ValueError(f"memory range {offset}+{length} outside the guest")
        return bytes(self.memory[offset:offset + length])

    def memory_digest(self) -> str:
        return hashlib.sha256(self.memory).hexdigest()

    def fingerprint(self) -> dict[str, str]:
        """Digest of the memory and of every disk; equal fingerprints mean equal state."""
        out = {"memory": self.memory_digest()}
        out.update({f"disk:{n}": d.digest() for n, d in sorted(self.disks.items())})
        return out

    @property
    def disk_gb(self) -> int:
        return disks_gb(self.disks)
