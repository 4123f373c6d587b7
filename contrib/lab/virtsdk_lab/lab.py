"""The lab: N libvirt hosts on this machine, each in its own network namespace.

Typical use from a test process (root)::

    with Lab(hosts=2) as lab:
        src, dst = lab.hosts
        conn = libvirt.open(src.libvirt_uri)

``up()`` allocates a free lab index (so several labs run side by side), creates a
bridge and one namespace per host, and starts each host's virtlogd and libvirtd;
``down()`` kills every process the lab's hosts run (libvirtd, virtlogd, QEMU, and
anything started with ``exec_prefix``), removes namespaces, bridge, veths and the
lab's directory.  See :mod:`virtsdk_lab.naming` for names and addresses.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from virtsdk_lab import allocation, capscache, daemons, network, processes, state, teardown
from virtsdk_lab.errors import LabError, PrerequisitesMissing
from virtsdk_lab.host import LIBVIRT_TCP_PORT, LabHost
from virtsdk_lab.naming import MAX_HOSTS, LabNames
from virtsdk_lab.prereqs import check_prerequisites

DEFAULT_ROOT = Path("/var/lib/virtsdk-lab")


@dataclass(frozen=True)
class HostStatus:
    """What ``status()`` reports about one host."""

    name: str
    address: str
    netns: str
    libvirt_uri: str
    libvirtd_pid: int | None
    virtlogd_pid: int | None
    listening: bool
    processes: int

    @property
    def healthy(self) -> bool:
        return bool(self.libvirtd_pid and self.virtlogd_pid and self.listening)


class Lab:
    """A multi-host libvirt lab; construct, then :meth:`up` (or use as a context manager).

    ``root`` holds one directory per running lab (``<root>/<name>-<index>``) with a
    sub-directory per host.  ``persistent`` labs (``virtsdk lab up``) outlive the
    process that started them until ``virtsdk lab down``.
    """

    def __init__(
        self,
        name: str = "vsdk",
        hosts: int = 2,
        root: Path = DEFAULT_ROOT,
        *,
        persistent: bool = False,
        run_dir: Path = allocation.RUN_DIR,
    ) -> None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"a lab has 1 to {MAX_HOSTS} hosts, got {hosts}")
        LabNames(name, 1)  # validates the name
        self.name = name
        self.host_count = hosts
        self.root = Path(root)
        self.persistent = persistent
        self.run_dir = run_dir
        self.hosts: list[LabHost] = []
        self.index: int | None = None
        self._lock: allocation.IndexLock | None = None
        self._previous_hosts: list[LabHost] = []

    # -- naming --------------------------------------------------------------------------

    @property
    def names(self) -> LabNames:
        if self.index is None:
            raise LabError(f"lab {self.name!r} is not up")
        return LabNames(self.name, self.index)

    @property
    def lab_dir(self) -> Path:
        """``<root>/<name>-<index>``: every host's directory lives below it."""
        return self.root / self.names.slug

    @property
    def is_up(self) -> bool:
        return self.index is not None

    def host(self, name: str) -> LabHost:
        """The host called ``name`` (e.g. ``"vsdk-b"``); KeyError if there is none."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"lab {self.name!r} has no host {name!r}")

    @contextmanager
    def inbound_rate_limit(self, name: str, rate_kbit: int) -> Iterator[LabHost]:
        """Within the block, host ``name`` receives over its lab link at most
        ``rate_kbit`` kbit/s (e.g. to hold a disk transfer to it for a known time).

        The cap is a token bucket on the root end of the host's veth, which carries
        everything the bridge delivers to the host (other hosts, the root namespace);
        what the host sends is untouched.  Removed when the block ends (and with the
        veth at :meth:`down`).  Yields the host.
        """
        host = self.host(name)
        veth = self.names.veth(host.position)
        network.limit_link_rate(veth, rate_kbit)
        try:
            yield host
        finally:
            network.clear_link_rate(veth)

    # -- lifecycle -----------------------------------------------------------------------

    def up(self) -> Lab:
        """Create the lab's network and start every host's libvirt; return ``self``.

        Called once by the test process (root namespace) or ``virtsdk lab up``.  On
        return every host's libvirtd accepts TCP connections at ``libvirt_uri``.  On
        any failure everything created so far is torn down before the error
        (:class:`PrerequisitesMissing` or :class:`LabError`) propagates.
        """
        if self.is_up:
            raise LabError(f"lab {self.names.slug} is already up")
        missing = check_prerequisites(with_guest=False)
        if missing:
            raise PrerequisitesMissing(missing)
        daemons.ensure_system_accounts()
        self._lock = allocation.allocate(
            is_reserved=lambda i: _reserved(self.run_dir, i),
            clean_stale=lambda i: clean_index(i, self.run_dir),
            run_dir=self.run_dir,
        )
        self.index = self._lock.index
        try:
            self._create()
        except BaseException as exc:
            try:
                self.down()
            except LabError as cleanup_exc:
                exc.add_note(f"cleanup after the failed up() also failed: {cleanup_exc}")
            raise
        return self

    def _create(self) -> None:
        names = self.names
        self.hosts = [
            LabHost(
                name=names.host_name(i),
                position=i,
                address=names.address(i),
                netns=names.netns(i),
                uuid=str(uuid.uuid4()),
                host_dir=self.lab_dir / names.host_name(i),
            )
            for i in range(self.host_count)
        ]
        record = self._state()
        state.save(self.run_dir, record)
        network.create_bridge(names.bridge, names.gateway)
        for host in self.hosts:
            network.create_host_link(host.netns, names.veth(host.position), names.bridge,
                                     host.address)
            host.netns_inode = network.netns_inode(host.netns)
            state.save(self.run_dir, self._state())
        for host in self.hosts:
            daemons.prepare_host_dir(host, self.hosts)
            capscache.seed(host, self.root)
            daemons.start_daemons(host)
            if not capscache.has_entries(self.root):
                capscache.prime(host)
                capscache.harvest(host, self.root)

    def _state(self) -> state.LabState:
        assert self.index is not None
        return state.LabState(name=self.name, index=self.index, root=self.root,
                              persistent=self.persistent, hosts=list(self.hosts))

    def down(self) -> None:
        """Stop every process of the lab's hosts and remove all it created.

        Idempotent; safe after a partial :meth:`up`.  Raises :class:`LabError` only if
        something could not be removed (the state file is then kept so a later
        ``virtsdk lab down --all`` can retry).
        """
        if self.index is None:
            return
        self._previous_hosts = list(self.hosts)
        for host in self.hosts[:1]:
            capscache.harvest(host, self.root)
        teardown.teardown(self.index, self.hosts, self.lab_dir)
        state.remove(self.run_dir, self.index)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.index = None
        self.hosts = []

    def detach(self) -> None:
        """Leave a persistent lab running and forget it in this process (drops the
        index lock; ``virtsdk lab down`` or :meth:`attach` + :meth:`down` end it)."""
        if not self.persistent:
            raise LabError("only a persistent lab can be left running (Lab(persistent=True))")
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.index = None
        self.hosts = []

    def __enter__(self) -> Lab:
        return self if self.is_up else self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- inspection ----------------------------------------------------------------------

    def status(self) -> list[HostStatus]:
        """One :class:`HostStatus` per host (empty if the lab is not up). Read-only."""
        return [host_status(h) for h in self.hosts]

    def leftovers(self) -> list[str]:
        """Processes still running in any namespace this lab ever had (should be empty
        after :meth:`down`); each entry is ``"<pid> <command line>"``."""
        found: list[str] = []
        for host in self.hosts or self._previous_hosts:
            if host.netns_inode is not None:
                found += [processes.describe(p)
                          for p in processes.pids_in_netns_inode(host.netns_inode)]
        return found

    # -- other processes' labs -----------------------------------------------------------

    @classmethod
    def attach(cls, index: int, run_dir: Path = allocation.RUN_DIR) -> Lab:
        """A :class:`Lab` for the recorded lab ``index`` (e.g. one started by the CLI).

        Takes the index lock, so it fails with :class:`LabError` while the lab's
        owning process is alive.
        """
        record = state.load(run_dir, index)
        if record is None:
            raise LabError(f"no lab with index {index} is recorded in {run_dir}")
        lock = allocation.try_lock(index, run_dir)
        if lock is None:
            raise LabError(f"lab {index} is in use by process {record.owner_pid}")
        lab = cls(record.name, max(1, len(record.hosts)), record.root,
                  persistent=record.persistent, run_dir=run_dir)
        lab.index, lab.hosts, lab._lock = index, record.hosts, lock
        return lab


def host_status(host: LabHost) -> HostStatus:
    """Probe ``host`` (pids, TCP listener, process count) without changing anything."""
    return HostStatus(
        name=host.name,
        address=host.address,
        netns=host.netns,
        libvirt_uri=host.libvirt_uri,
        libvirtd_pid=host.libvirtd_pid(),
        virtlogd_pid=host.virtlogd_pid(),
        listening=_listening(host.address),
        processes=len(network.netns_pids(host.netns)),
    )


def recorded_labs(run_dir: Path = allocation.RUN_DIR) -> list[tuple[state.LabState, bool]]:
    """Every lab recorded on this machine, with whether its owner still holds its lock."""
    result = []
    for index in state.recorded_indexes(run_dir):
        record = state.load(run_dir, index)
        if record is None:
            continue
        lock = allocation.try_lock(index, run_dir)
        if lock is not None:
            lock.release()
        result.append((record, lock is None))
    return result


def clean_index(index: int, run_dir: Path = allocation.RUN_DIR) -> bool:
    """Tear down whatever lab ``index`` left behind; the caller holds the index lock.

    Returns True if there was something to clean.  Used for stale labs (their
    owner died) and by ``virtsdk lab down``.
    """
    record = state.load(run_dir, index)
    if record is None and not teardown.has_resources(index):
        return False
    hosts = record.hosts if record else []
    lab_dir = record.lab_dir if record else None
    teardown.teardown(index, hosts, lab_dir)
    state.remove(run_dir, index)
    return True


def _reserved(run_dir: Path, index: int) -> bool:
    """A persistent lab whose daemons still run keeps its index after its process exits."""
    record = state.load(run_dir, index)
    if record is None or not record.persistent:
        return False
    return any(h.libvirtd_pid() is not None for h in record.hosts)


def _listening(address: str) -> bool:
    try:
        with socket.create_connection((address, LIBVIRT_TCP_PORT), timeout=0.5):
            return True
    except OSError:
        return False
