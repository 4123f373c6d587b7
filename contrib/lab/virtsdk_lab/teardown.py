"""Remove everything a lab (or a crashed run's stale lab) left on the machine.

Works from the lab index alone: processes are found through the lab's network
namespaces (or, if a namespace is already gone, through its recorded inode),
interfaces, namespaces and the hosts' cgroups by their index-derived names.  Every step tolerates a
resource that does not exist, so it is safe after a partial ``up()`` and safe to run
twice.  Called by :meth:`Lab.down`, by index allocation for stale labs and by
``virtsdk lab down --all``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from virtsdk_lab import cgroups, network, processes
from virtsdk_lab.errors import LabError
from virtsdk_lab.host import LabHost
from virtsdk_lab.naming import NAME_PREFIX


def index_netns(index: int) -> list[str]:
    """Existing network namespaces named like lab ``index``'s hosts."""
    pattern = re.compile(rf"^{NAME_PREFIX}{index}-[a-z]$")
    return [ns for ns in network.list_netns(f"{NAME_PREFIX}{index}-") if pattern.match(ns)]


def index_links(index: int) -> list[str]:
    """Existing root-namespace interfaces named like lab ``index``'s bridge and veths."""
    pattern = re.compile(rf"^{NAME_PREFIX}{index}(br|[a-z])$")
    return [ln for ln in network.list_links(f"{NAME_PREFIX}{index}") if pattern.match(ln)]


def has_resources(index: int) -> bool:
    """True if any namespace or interface of lab ``index`` still exists."""
    return bool(index_netns(index) or index_links(index))


def teardown(index: int, hosts: list[LabHost], lab_dir: Path | None) -> None:
    """Stop every process of lab ``index``, delete its network and its directory.

    ``hosts`` are the hosts known from the lab's state (possibly empty), ``lab_dir``
    its directory (``None``: leave directories alone).  Raises :class:`LabError`
    listing any process that survived SIGKILL (the network is then left in place so
    nothing is orphaned silently).
    """
    if lab_dir is not None:
        from virtsdk_lab.deployment import stop_root_services

        stop_root_services(lab_dir / "services")
    netns_names = sorted({h.netns for h in hosts} | set(index_netns(index)))
    victims: set[int] = set()
    for ns in netns_names:
        victims.update(network.netns_pids(ns))
    for host in hosts:
        if host.netns_inode is not None:
            victims.update(processes.pids_in_netns_inode(host.netns_inode))
    survivors = processes.terminate(sorted(victims))
    if survivors:
        listing = "\n".join(processes.describe(p) for p in survivors)
        raise LabError(f"lab {index}: processes survived SIGKILL:\n{listing}")
    for ns in netns_names:
        network.delete_netns(ns)
        cgroups.remove(ns)
    for link in index_links(index):
        network.delete_link(link)
    leftover = index_netns(index) + index_links(index)
    if leftover:
        raise LabError(f"lab {index}: could not remove {', '.join(leftover)}")
    if lab_dir is not None and lab_dir.exists():
        shutil.rmtree(lab_dir)


def indexes_with_resources() -> list[int]:
    """Lab indexes that own a namespace or interface on this machine right now."""
    found: set[int] = set()
    ns_re = re.compile(rf"^{NAME_PREFIX}(\d+)-[a-z]$")
    link_re = re.compile(rf"^{NAME_PREFIX}(\d+)(br|[a-z])$")
    for ns in network.list_netns(NAME_PREFIX):
        m = ns_re.match(ns)
        if m:
            found.add(int(m.group(1)))
    for link in network.list_links(NAME_PREFIX):
        m = link_re.match(link)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)
