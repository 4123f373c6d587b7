"""Names and addresses of one lab, derived from its lab index.

Every resource a lab creates in the root namespace (network namespaces, a bridge,
veth ends, a subnet) is named after the lab index, never after the user-chosen lab
name, so a stale lab left by a killed run can be found and removed knowing only its
index, and two labs with the same name (two pytest processes) never collide.
Interface names stay within Linux's 15-character limit.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

MIN_INDEX = 1
MAX_INDEX = 254
MAX_HOSTS = 26
SUBNET_PREFIX = "198.18"  # RFC 2544 benchmarking range, never routed off-machine
FIRST_HOST_OCTET = 11
IFNAMSIZ = 15
NAME_PREFIX = "vsdk"


def host_letter(position: int) -> str:
    """Return the letter of host ``position`` (0 -> ``a``); raise ValueError past ``z``."""
    if not 0 <= position < MAX_HOSTS:
        raise ValueError(f"a lab has 1 to {MAX_HOSTS} hosts, got position {position}")
    return string.ascii_lowercase[position]


@dataclass(frozen=True)
class LabNames:
    """Pure name/address arithmetic for lab ``index`` (1..254) called ``name``."""

    name: str
    index: int

    def __post_init__(self) -> None:
        if not MIN_INDEX <= self.index <= MAX_INDEX:
            raise ValueError(f"lab index must be {MIN_INDEX}..{MAX_INDEX}, got {self.index}")
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"lab name must be letters, digits, '-' or '_', got {self.name!r}")

    @property
    def slug(self) -> str:
        """Unique id of the lab on this machine, e.g. ``vsdk-3``; used for its directory."""
        return f"{self.name}-{self.index}"

    @property
    def bridge(self) -> str:
        """Bridge in the root namespace that joins every host's veth."""
        return _ifname(f"{NAME_PREFIX}{self.index}br")

    @property
    def gateway(self) -> str:
        """Address of the root namespace on the bridge (the test process)."""
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def cidr(self) -> str:
        """The lab's /24."""
        return f"{SUBNET_PREFIX}.{self.index}.0/24"

    def host_name(self, position: int) -> str:
        """Host name and hostname of host ``position``: ``<name>-a``, ``<name>-b`` ..."""
        return f"{self.name}-{host_letter(position)}"

    def netns(self, position: int) -> str:
        """Network namespace of host ``position`` (index-derived, see module doc)."""
        return f"{NAME_PREFIX}{self.index}-{host_letter(position)}"

    def veth(self, position: int) -> str:
        """Root-namespace end of host ``position``'s veth pair (the other end is eth0)."""
        return _ifname(f"{NAME_PREFIX}{self.index}{host_letter(position)}")

    def address(self, position: int) -> str:
        """IPv4 address of host ``position`` on the lab bridge."""
        return f"{SUBNET_PREFIX}.{self.index}.{FIRST_HOST_OCTET + position}"


def netns_prefix(index: int) -> str:
    """Prefix shared by every network namespace of lab ``index`` (for stale cleanup)."""
    return f"{NAME_PREFIX}{index}-"


def _ifname(name: str) -> str:
    if len(name) > IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return name
