"""The lab network: one bridge in the root namespace, one namespace + veth per host.

Layout for lab index N: bridge ``vsdkNbr`` with ``198.18.N.1/24`` (the test process
reaches every host through it); host ``i`` lives in namespace ``vsdkN-<letter>``,
whose ``eth0`` is the peer of ``vsdkN<letter>`` enslaved to the bridge and carries
``198.18.N.(11+i)/24``.  Hosts reach each other through the bridge; nothing is routed
off the machine.  Called only by :class:`virtsdk_lab.lab.Lab` in the root namespace.
"""

from __future__ import annotations

from pathlib import Path

from virtsdk_lab.commands import run

NETNS_DIR = Path("/run/netns")


def create_bridge(bridge: str, gateway: str) -> None:
    """Create ``bridge`` with the root namespace's address ``gateway``/24 and bring it up."""
    run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{gateway}/24", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def create_host_link(netns: str, veth: str, bridge: str, address: str) -> None:
    """Create namespace ``netns`` and plug it into ``bridge`` with ``address``/24 on eth0."""
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge])
    run(["ip", "link", "set", veth, "up"])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    run(["ip", "-n", netns, "addr", "add", f"{address}/24", "dev", "eth0"])
    run(["ip", "-n", netns, "link", "set", "eth0", "up"])


def netns_exists(netns: str) -> bool:
    return (NETNS_DIR / netns).exists()


def link_exists(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()


def list_netns(prefix: str) -> list[str]:
    """Names of existing network namespaces starting with ``prefix``."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def list_links(prefix: str) -> list[str]:
    """Root-namespace interfaces whose name starts with ``prefix``."""
    base = Path("/sys/class/net")
    return sorted(p.name for p in base.iterdir() if p.name.startswith(prefix))


def netns_pids(netns: str) -> list[int]:
    """Every process living in ``netns`` (daemons, QEMU, anything a test started there)."""
    if not netns_exists(netns):
        return []
    result = run(["ip", "netns", "pids", netns], check=False)
    return sorted(int(tok) for tok in result.stdout.split() if tok.isdigit())


def netns_inode(netns: str) -> int | None:
    """Inode of the namespace, to recognise its processes after the name is gone."""
    try:
        return (NETNS_DIR / netns).stat().st_ino
    except OSError:
        return None


def delete_netns(netns: str) -> None:
    """Remove ``netns`` if it exists (its eth0 and the veth peer go with it)."""
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)


def delete_link(ifname: str) -> None:
    """Remove root-namespace interface ``ifname`` if it exists."""
    if link_exists(ifname):
        run(["ip", "link", "del", ifname], check=False)


def limit_link_rate(ifname: str, rate_kbit: int, latency_ms: int = 100) -> None:
    """Cap what root-namespace interface ``ifname`` sends at ``rate_kbit`` kbit/s.

    A token bucket filter (``tc qdisc ... tbf``) replaces the interface's root queue:
    packets wait at most ``latency_ms`` in it (further ones are dropped and TCP backs
    off), so every flow through the interface keeps going, only slower, and the bound
    holds whatever the machine's speed.  :func:`clear_link_rate` removes it; so does
    deleting the interface (lab teardown).
    """
    run(["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", f"{rate_kbit}kbit",
         "burst", "32kb", "latency", f"{latency_ms}ms"])


def clear_link_rate(ifname: str) -> None:
    """Give ``ifname`` back its default queue (no-op if it has no cap or is gone)."""
    if link_exists(ifname):
        run(["tc", "qdisc", "del", "dev", ifname, "root"], check=False)
