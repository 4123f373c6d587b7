"""The fabric: hosts that can reach each other, and their state.

Every :class:`~virtsdk_fake.driver.FakeDriver` joins the fabric named by ``[fake]
fabric`` with its host name.  The fabric holds each host's instances, the copies kept
for cold migration, the disks received, the live-migration placeholders, the armed
faults (:attr:`Fabric.faults`) and the simulated clock (:attr:`Fabric.clock`).  Tests
and demos reach it with :func:`get_fabric` and look inside with
``fabric.host("h1").instances[uuid]``.

By default a fabric lives in one process (the fast case: embedded clouds, tests).
With ``[fake] fabric_dir`` set, the hosts' state is shared through a file in that
directory by every process that names the same fabric and directory, so one compute
service per process can migrate guests to another's: entering :attr:`Fabric.lock`
takes an inter-process file lock (oslo.concurrency) and loads what other processes
wrote since, leaving it writes the state back (atomically, only when it changed).
Everything that reads or changes host state does so inside the lock.  Faults, the
clock and running live-migration jobs stay private to each process.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from oslo_concurrency import lockutils

from virtsdk.exceptions import HostNotFound, InsufficientResources, MigrationError
from virtsdk.objects import Flavor, HostResources
from virtsdk_fake.clock import Clock, ManualClock, ScaledClock
from virtsdk_fake.faults import FaultInjector, StallHandle
from virtsdk_fake.storage import FakeDisk, FakeInstance, disks_gb

if TYPE_CHECKING:
    from virtsdk_fake.precopy import SimulatedLiveMigration

LOG = logging.getLogger(__name__)


@dataclass
class Capacity:
    vcpus: int
    memory_mb: int
    local_gb: int


@dataclass
class MigrationParams:
    """How a guest behaves during live migration (overrides its metadata)."""

    dirty_rate_mbps: float | None = None
    working_set_mb: float | None = None


@dataclass
class FakeHost:
    """One host's state.  Mutated only under :attr:`Fabric.lock`."""

    name: str
    capacity: Capacity
    address: str
    #: instances defined on this host (running or not), by uuid
    instances: dict[str, FakeInstance] = field(default_factory=dict)
    #: cold migration: the source's kept copy (Nova's ``<dir>_resize``), by uuid
    resize_copies: dict[str, FakeInstance] = field(default_factory=dict)
    #: cold migration: disks received on the destination, waiting for finish_migration
    incoming_disks: dict[str, dict[str, FakeDisk]] = field(default_factory=dict)
    #: cold migration: destinations prepared by prepare_migrate_disk_target (uuid->token)
    cold_targets: dict[str, str] = field(default_factory=dict)
    #: live migration: the paused placeholder pre_live_migration creates, by uuid
    incoming_live: dict[str, FakeInstance] = field(default_factory=dict)
    #: live migration: disks left on the source after a block migration, by uuid
    leftovers: dict[str, dict[str, FakeDisk]] = field(default_factory=dict)
    #: live migrations running from this host, by uuid
    jobs: dict[str, SimulatedLiveMigration] = field(default_factory=dict)
    joined: int = 0

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the running jobs (threads and callbacks of one process)."""
        state = dict(self.__dict__)
        state["jobs"] = {}
        return state

    def usage(self) -> Capacity:
        """vCPUs, RAM and disk taken by everything this host holds for instances."""
        vcpus = ram = 0
        disk = 0
        for inst in (*self.instances.values(), *self.resize_copies.values(),
                     *self.incoming_live.values()):
            vcpus += inst.flavor.vcpus
            ram += inst.flavor.memory_mb
            disk += inst.disk_gb
        for disks in (*self.incoming_disks.values(), *self.leftovers.values()):
            disk += disks_gb(disks)
        return Capacity(vcpus, ram, disk)

    def resources(self) -> HostResources:
        used = self.usage()
        return HostResources(
            hostname=self.name, vcpus=self.capacity.vcpus,
            memory_mb=self.capacity.memory_mb, local_gb=self.capacity.local_gb,
            vcpus_used=used.vcpus, memory_mb_used=used.memory_mb, local_gb_used=used.local_gb,
            hypervisor_type="fake", hypervisor_version=1000, hypervisor_hostname=self.name,
            cpu_info={"arch": "x86_64", "model": "fake", "vendor": "virtsdk"},
            disk_available_least=self.capacity.local_gb - used.local_gb,
        )

    def check_fits(self, flavor: Flavor, what: str, disk_gb: int | None = None,
                   memory: bool = True) -> None:
        """Raise InsufficientResources unless ``flavor`` fits in what is free."""
        used = self.usage()
        need_disk = disk_gb if disk_gb is not None else (
            flavor.root_gb + flavor.ephemeral_gb + -(-flavor.swap_mb // 1024))
        short = []
        if memory and used.vcpus + flavor.vcpus > self.capacity.vcpus:
            short.append(f"vCPUs {self.capacity.vcpus - used.vcpus} free < {flavor.vcpus}")
        if memory and used.memory_mb + flavor.memory_mb > self.capacity.memory_mb:
            short.append(f"RAM {self.capacity.memory_mb - used.memory_mb} MiB free < "
                         f"{flavor.memory_mb}")
        if used.local_gb + need_disk > self.capacity.local_gb:
            short.append(f"disk {self.capacity.local_gb - used.local_gb} GiB free < "
                         f"{need_disk}")
        if short:
            raise InsufficientResources(f"host {self.name!r} cannot take {what}: "
                                        + "; ".join(short))

    def holds(self, uuid: str) -> bool:
        """True if anything of instance ``uuid`` is on this host."""
        return any(uuid in d for d in (self.instances, self.resize_copies,
                                       self.incoming_disks, self.incoming_live,
                                       self.leftovers))


def _merge(local: Any, loaded: Any) -> None:
    """Make ``local`` equal to ``loaded`` in place, keeping the identity of every
    nested host, instance, disk and dict found under the same key, so references a
    driver method holds across two lock sections stay live."""
    if isinstance(local, bytearray):
        local[:] = loaded
        return
    if isinstance(local, dict):
        for key in [k for k in local if k not in loaded]:
            del local[key]
        for key, value in loaded.items():
            if key in local and _same_kind(local[key], value):
                _merge(local[key], value)
            else:
                local[key] = value
        return
    for name, value in vars(loaded).items():
        if name == "jobs":  # this process's running jobs stay
            continue
        current = vars(local).get(name)
        if current is not None and _same_kind(current, value):
            _merge(current, value)
        else:
            setattr(local, name, value)


def _same_kind(a: Any, b: Any) -> bool:
    """Merged in place rather than replaced: containers and the fabric's own records
    (never enums or other shared immutable values)."""
    return type(a) is type(b) and isinstance(
        a, (dict, bytearray, FakeHost, FakeInstance, FakeDisk, Capacity, MigrationParams))


class _FileStore:
    """The fabric's shared state file and its inter-process lock."""

    def __init__(self, directory: str, name: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{name}.fabric")
        self._lock = lockutils.InterProcessLock(os.path.join(directory, f"{name}.lock"))
        self._seen: tuple[int, int, int] | None = None
        self._last: bytes = b""

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> dict[str, Any] | None:
        """The state written by another process since our last load/save, or None."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        with open(self.path, "rb") as fh:
            data = fh.read()
        self._seen, self._last = stamp, data
        state: dict[str, Any] = pickle.loads(data)  # noqa: S301 - our own file
        return state

    def save(self, state: dict[str, Any]) -> None:
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        if data == self._last and self._stamp() == self._seen:
            return
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), prefix=".fabric-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._seen, self._last = self._stamp(), data


class _FabricLock:
    """Re-entrant lock of one fabric; the outermost holder also holds the shared
    file (if any), loading on entry and saving on exit."""

    def __init__(self, fabric: Fabric) -> None:
        self._fabric = fabric
        self._rlock = threading.RLock()
        self._depth = 0

    def __enter__(self) -> _FabricLock:
        self._rlock.acquire()
        self._depth += 1
        store = self._fabric.store
        if self._depth == 1 and store is not None:
            try:
                store.acquire()
                try:
                    self._fabric._load()  # noqa: SLF001
                except BaseException:
                    store.release()
                    raise
            except BaseException:
                self._depth -= 1
                self._rlock.release()
                raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        store = self._fabric.store
        try:
            if self._depth == 1 and store is not None:
                try:
                    self._fabric._save()  # noqa: SLF001
                finally:
                    store.release()
        finally:
            self._depth -= 1
            self._rlock.release()


class Fabric:
    """Hosts that share a network (and, optionally, storage): inside one process, or
    across processes through ``directory`` (see the module docstring)."""

    def __init__(self, name: str, clock: Clock | None = None,
                 directory: str | None = None) -> None:
        self.name = name
        self.clock: Clock = clock or ManualClock()
        self.faults = FaultInjector()
        self.hosts: dict[str, FakeHost] = {}
        self.shared_storage = False
        self.link_bandwidth_mbps = 1024
        #: MiB/s of each host's link, shared by its live migrations (0: not shared)
        self.host_link_mbps = 0
        self.params: dict[str, MigrationParams] = {}
        #: shared-storage check files (token -> storage pool that holds it)
        self.check_files: dict[str, str] = {}
        #: where the state is shared with other processes (None: this process only)
        self.store = _FileStore(directory, name) if directory else None
        self._lock = _FabricLock(self)

    # -- locking ---------------------------------------------------------------------------

    @property
    def lock(self) -> _FabricLock:
        """Context manager serialising every read and change of fabric state
        (re-entrant; across processes when the fabric has a directory)."""
        return self._lock

    def _state(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "params": self.params, "check_files": self.check_files}

    def _load(self) -> None:
        assert self.store is not None
        loaded = self.store.load()
        if loaded is not None:
            _merge(self._state(), loaded)

    def _save(self) -> None:
        assert self.store is not None
        self.store.save(self._state())

    # -- hosts -----------------------------------------------------------------------------

    def join(self, host: str, capacity: Capacity) -> FakeHost:
        """Add ``host`` (or find it again, keeping its instances, like a hypervisor
        that outlives its compute service)."""
        with self.lock:
            existing = self.hosts.get(host)
            if existing is not None:
                existing.capacity = capacity
                existing.joined += 1
                return existing
            new = FakeHost(host, capacity, address=f"192.0.2.{len(self.hosts) + 1}",
                           joined=1)
            self.hosts[host] = new
            return new

    def host(self, name: str) -> FakeHost:
        """The host ``name``; HostNotFound if it never joined this fabric."""
        try:
            with self.lock:
                return self.hosts[name]
        except KeyError:
            raise HostNotFound(f"host {name!r} is not on fake fabric {self.name!r} "
                               f"(hosts: {', '.join(sorted(self.hosts)) or 'none'})") from None

    def set_capacity(self, host: str, vcpus: int, memory_mb: int, local_gb: int) -> None:
        with self.lock:
            self.host(host).capacity = Capacity(vcpus, memory_mb, local_gb)

    def storage_pool(self, host: str) -> str:
        return "shared" if self.shared_storage else host

    # -- instances, for tests and demos ---------------------------------------------------

    def find(self, uuid: str) -> list[tuple[str, str]]:
        """Where anything of instance ``uuid`` lives: [(host, kind)], kind one of
        ``instance``, ``resize_copy``, ``incoming_disks``, ``incoming_live``,
        ``leftovers``.  A settled instance appears exactly once, as ``instance``."""
        out = []
        with self.lock:
            for name, h in sorted(self.hosts.items()):
                for kind, store in (("instance", h.instances),
                                    ("resize_copy", h.resize_copies),
                                    ("incoming_disks", h.incoming_disks),
                                    ("incoming_live", h.incoming_live),
                                    ("leftovers", h.leftovers)):
                    if uuid in store:
                        out.append((name, kind))
        return out

    def instance(self, uuid: str) -> FakeInstance:
        """The one defined instance ``uuid``, wherever it is (KeyError if none)."""
        with self.lock:
            for h in self.hosts.values():
                if uuid in h.instances:
                    return h.instances[uuid]
        raise KeyError(f"instance {uuid} is defined on no host of fabric {self.name!r}")

    def set_migration_params(self, uuid: str, dirty_rate_mbps: float | None = None,
                             working_set_mb: float | None = None) -> None:
        """How instance ``uuid`` dirties memory while it live-migrates (MiB/s, and
        how many MiB it keeps rewriting).  Overrides its ``fake:*`` metadata."""
        with self.lock:
            self.params[uuid] = MigrationParams(dirty_rate_mbps, working_set_mb)

    # -- faults and time -------------------------------------------------------------------

    def inject(self, step: str, host: str | None = None,
               exc: BaseException | type[BaseException] | None = None,
               times: int | None = 1) -> None:
        """Shortcut for :meth:`FaultInjector.inject`."""
        self.faults.inject(step, host, exc, times)

    def stall(self, step: str, host: str | None = None, times: int | None = 1,
              seconds: float | None = None) -> StallHandle:
        """Shortcut for :meth:`FaultInjector.stall`."""
        return self.faults.stall(step, host, times, seconds)

    def live_bandwidth_mbps(self, source: str, dest: str, stream_mbps: float) -> float:
        """MiB/s a live migration from ``source`` to ``dest`` gets now: ``stream_mbps``,
        or less when :attr:`host_link_mbps` is set and the running migrations leaving
        ``source`` (or entering ``dest``) share that link equally (itself included)."""
        if not self.host_link_mbps:
            return stream_mbps
        with self.lock:
            running = [(h.name, j.dest) for h in self.hosts.values()
                       for j in h.jobs.values() if j.job_type == "unbounded"]
        out = sum(1 for src, _ in running if src == source)
        into = sum(1 for _, dst in running if dst == dest)
        return min(stream_mbps, self.host_link_mbps / max(1, out),
                   self.host_link_mbps / max(1, into))

    def use_clock(self, clock: Clock) -> None:
        self.clock = clock

    def reset(self) -> None:
        """Forget every host, fault and parameter (tests call this between cases)."""
        self.faults.clear()
        with self.lock:
            for h in self.hosts.values():
                for job in list(h.jobs.values()):
                    try:
                        job.abort()
                    except MigrationError:  # post-copy jobs cannot be aborted
                        LOG.warning("fabric reset: a migration from %s is in post-copy",
                                    h.name)
            self.hosts.clear()
            self.params.clear()
            self.check_files.clear()
            self.faults = FaultInjector()


_FABRICS: dict[str, Fabric] = {}
_REGISTRY_LOCK = threading.Lock()


def get_fabric(name: str = "default", time_scale: float | None = None,
               directory: str | None = None) -> Fabric:
    """The process-wide fabric ``name``, created on first use (with a ScaledClock of
    ``time_scale`` when given, else a ManualClock), shared with other processes
    through ``directory`` when given.  Asking for a fabric this process already
    holds under another directory is a ValueError."""
    with _REGISTRY_LOCK:
        fabric = _FABRICS.get(name)
        if fabric is None:
            clock: Clock = ScaledClock(time_scale) if time_scale is not None else ManualClock()
            fabric = _FABRICS[name] = Fabric(name, clock, directory)
        elif directory and (fabric.store is None or fabric.store.path != os.path.join(
                directory, f"{name}.fabric")):
            raise ValueError(f"fake fabric {name!r} is already open in this process "
                             f"{'without a directory' if fabric.store is None else 'elsewhere'}")
        return fabric


def drop_fabric(name: str) -> None:
    """Forget fabric ``name`` entirely (the next get_fabric builds a new one)."""
    with _REGISTRY_LOCK:
        fabric = _FABRICS.pop(name, None)
    if fabric is not None:
        fabric.reset()
