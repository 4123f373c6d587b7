"""Typed data objects passed between the manager and drivers, and over RPC.

Every object is a dataclass deriving from :class:`VirtObject`, which gives it a
lossless round trip through JSON-safe primitives (:meth:`VirtObject.to_primitive` /
:func:`from_primitive`).  The RPC serializer uses that round trip on every argument,
so an object that does not survive it cannot cross a process boundary either.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from virtsdk.states import MigrationStatus, MigrationType, PowerState, TaskState, VMState

_REGISTRY: dict[str, type[VirtObject]] = {}
_TAG = "virtsdk_object"
#: key of a primitive listing the registered ancestors of its class, nearest first
_BASES = "bases"


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


#: ``{object name: version}``: the versions a receiver understands (see
#: :meth:`VirtObject.to_primitive`); objects not named go at their own VERSION
Manifest = Mapping[str, str]


class IncompatibleObjectVersion(TypeError):
    """A primitive of a major version this side cannot read, or a backport asked for
    across a major version."""


def version_tuple(version: str) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``."""
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


@dataclass
class VirtObject:
    """Base of every data object; registers subclasses for :func:`from_primitive`.

    Versioned like Nova's objects (oslo.versionedobjects' protocol on dataclasses):
    every class has a ``VERSION`` ("major.minor"; a minor bump only adds fields), the
    primitive carries it, and :meth:`obj_make_compatible` turns a primitive into what a
    receiver of an older minor version expects.  A receiver ignores fields it does not
    know (a newer minor version) and refuses another major version.
    """

    _registry_name: ClassVar[str] = ""
    #: this class's version; bump the minor version when adding a field
    VERSION: ClassVar[str] = "1.0"
    #: ``{field: version that added it}``: dropped when backporting to an older version
    obj_added_fields: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._registry_name = cls.__name__
        _REGISTRY[cls.__name__] = cls

    def to_primitive(self, manifest: Manifest | None = None) -> dict[str, Any]:
        """Return a JSON-safe dict tagged with the class name and version.

        ``manifest`` names the versions the receiver understands: an object (or a
        nested one) listed there at an older version is backported to it.
        """
        data = {f.name: to_primitive(getattr(self, f.name), manifest)
                for f in dataclasses.fields(self)}
        foreign: _Foreign | None = getattr(self, "_obj_foreign", None)
        if foreign is not None:  # a subclass this process does not know: forward as is
            return {_TAG: foreign.name, "version": foreign.version,
                    "data": {**foreign.data, **data}, _BASES: foreign.bases}
        version = self.VERSION
        target = (manifest or {}).get(self._registry_name)
        if target is not None and target != version:
            if version_tuple(target)[0] != version_tuple(version)[0] or \
                    version_tuple(target) > version_tuple(version):
                raise IncompatibleObjectVersion(
                    f"cannot make {self._registry_name} {version} into version {target}")
            self.obj_make_compatible(data, target)
            version = target
        prim = {_TAG: self._registry_name, "version": version, "data": data}
        bases = [c._registry_name for c in type(self).__mro__[1:]
                 if isinstance(c, type) and issubclass(c, VirtObject) and c is not VirtObject]
        if bases:
            prim[_BASES] = bases
        return prim

    def obj_make_compatible(self, primitive: dict[str, Any], target_version: str) -> None:
        """Change ``primitive`` (this object's field data) in place into what version
        ``target_version`` of the class expects.  The default drops the fields of
        :attr:`obj_added_fields` newer than the target; override (and call this) when a
        newer field's meaning must be folded into older ones."""
        target = version_tuple(target_version)
        for name, added in self.obj_added_fields.items():
            if target < version_tuple(added):
                primitive.pop(name, None)

    @classmethod
    def from_primitive(cls, prim: dict[str, Any]) -> Self:
        obj = from_primitive(prim)
        if not isinstance(obj, cls):
            raise TypeError(f"primitive holds {type(obj).__name__}, not {cls.__name__}")
        return obj

    def copy(self) -> Self:
        return self.from_primitive(self.to_primitive())


def to_primitive(value: Any, manifest: Manifest | None = None) -> Any:
    """Turn objects, enums and containers into JSON-safe primitives (objects
    backported to the versions of ``manifest``, see :meth:`VirtObject.to_primitive`)."""
    if isinstance(value, VirtObject):
        return value.to_primitive(manifest)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_primitive(v, manifest) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_primitive(v, manifest) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot serialise {type(value).__name__}: {value!r}")


def from_primitive(value: Any) -> Any:
    """Inverse of :func:`to_primitive` (enum fields are restored by their annotations).

    A primitive without a version is 1.0 (peers older than versioning); one of
    another major version raises :class:`IncompatibleObjectVersion`.
    """
    if isinstance(value, dict):
        name = value.get(_TAG)
        # other keys next to the tag and data (a driver's or a newer peer's) are ignored
        if isinstance(name, str) and isinstance(value.get("data"), dict):
            cls = _REGISTRY.get(name)
            if cls is None:
                return _from_foreign(name, value)
            version = str(value.get("version") or "1.0")
            if version_tuple(version)[0] != version_tuple(cls.VERSION)[0]:
                raise IncompatibleObjectVersion(
                    f"{name} {version} cannot be read by this side ({cls.VERSION})")
            return _build(cls, value["data"])
        return {k: from_primitive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_primitive(v) for v in value]
    return value


def _build(cls: type[VirtObject], data: dict[str, Any]) -> VirtObject:
    hints = _type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    for key, raw in data.items():
        if key not in names:
            continue  # a newer peer sent a field this side does not know
        kwargs[key] = _coerce(hints.get(key), from_primitive(raw))
    return cls(**kwargs)


@dataclass(frozen=True)
class _Foreign:
    """The identity and extra fields of a subclass this process does not know."""

    name: str
    version: str
    bases: list[str]
    data: dict[str, Any]


def _from_foreign(name: str, value: dict[str, Any]) -> VirtObject:
    """Decode an object of a class not registered here (a driver's subclass in a
    process that never loaded the driver) as its nearest known base class, listed by
    the sender under ``bases``.  The object keeps the sender's class name, version and
    extra fields, so sending it on (destination -> conductor -> source) is lossless."""
    bases = value.get(_BASES)
    if isinstance(bases, list):
        for base in bases:
            cls = _REGISTRY.get(base) if isinstance(base, str) else None
            if cls is None:
                continue
            obj = _build(cls, value["data"])
            known = {f.name for f in dataclasses.fields(cls)}
            extra = {k: v for k, v in value["data"].items() if k not in known}
            object.__setattr__(obj, "_obj_foreign", _Foreign(
                name, str(value.get("version") or "1.0"), list(bases), extra))
            return obj
    raise TypeError(f"unknown object type {name!r}")


_HINTS: dict[type[VirtObject], dict[str, Any]] = {}


def _type_hints(cls: type[VirtObject]) -> dict[str, Any]:
    """``typing.get_type_hints`` per class, computed once (it dominates decoding)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _coerce(hint: Any, value: Any) -> Any:
    if value is None or hint is None:
        return value
    for candidate in typing.get_args(hint) or (hint,):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate(value)
    return value


# -- flavors, images, networking -------------------------------------------------------


@dataclass
class Flavor(VirtObject):
    """A size: memory, vCPUs and disks.  ``root_gb`` and ``ephemeral_gb`` are GiB."""

    name: str
    memory_mb: int
    vcpus: int
    root_gb: int
    ephemeral_gb: int = 0
    swap_mb: int = 0
    flavorid: str = ""
    extra_specs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from virtsdk.exceptions import InvalidFlavor

        if not self.name:
            raise InvalidFlavor("a flavor needs a name")
        for attr in ("memory_mb", "vcpus"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidFlavor(f"flavor {self.name!r}: {attr} must be a positive int")
        for attr in ("root_gb", "ephemeral_gb", "swap_mb"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidFlavor(f"flavor {self.name!r}: {attr} must be an int >= 0")
        if not self.flavorid:
            self.flavorid = self.name


@dataclass
class ImageMeta(VirtObject):
    """The image an instance boots from.

    ``location`` is driver-interpreted (a file path for libvirt, a name for fake).
    """

    id: str
    name: str = ""
    disk_format: str = "raw"
    location: str = ""
    size: int = 0
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class VIF(VirtObject):
    """One virtual network interface, matched across hosts by MAC address."""

    id: str
    address: str
    network: str = ""
    type: str = "user"
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class NetworkInfo(VirtObject):
    vifs: list[VIF] = field(default_factory=list)


@dataclass
class BlockDeviceMapping(VirtObject):
    """A volume attached to an instance (connection info is driver-interpreted)."""

    device_name: str
    volume_id: str
    connection_info: dict[str, Any] = field(default_factory=dict)


# -- instances and hosts ---------------------------------------------------------------


@dataclass
class Instance(VirtObject):
    """A virtual machine as the manager records it."""

    name: str
    flavor: Flavor
    uuid: str = field(default_factory=_new_uuid)
    image: ImageMeta | None = None
    host: str | None = None
    node: str | None = None
    vm_state: VMState = VMState.BUILDING
    task_state: TaskState | None = None
    power_state: PowerState = PowerState.NOSTATE
    old_flavor: Flavor | None = None
    new_flavor: Flavor | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    system_metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class InstanceInfo(VirtObject):
    """What a hypervisor reports about one instance (``ComputeDriver.get_info``)."""

    state: PowerState
    max_mem_kb: int = 0
    mem_kb: int = 0
    num_cpu: int = 0
    cpu_time_ns: int = 0
    internal_id: str = ""


@dataclass
class HostResources(VirtObject):
    """A host's capacity and usage (``ComputeDriver.get_available_resource``)."""

    hostname: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int = 0
    memory_mb_used: int = 0
    local_gb_used: int = 0
    hypervisor_type: str = ""
    hypervisor_version: int = 0
    hypervisor_hostname: str = ""
    cpu_info: dict[str, Any] = field(default_factory=dict)
    disk_available_least: int | None = None

    @property
    def free_ram_mb(self) -> int:
        return self.memory_mb - self.memory_mb_used

    @property
    def free_disk_gb(self) -> int:
        return self.local_gb - self.local_gb_used

    @property
    def free_vcpus(self) -> int:
        return self.vcpus - self.vcpus_used


@dataclass
class DiskInfo(VirtObject):
    """One local disk of an instance (``ComputeDriver.get_instance_disk_info``).

    Sizes are bytes.  ``virt_disk_size`` is what the guest sees; ``disk_size`` is what
    the file occupies; ``over_committed_disk_size`` is the difference for thin disks.
    ``path`` is relative to the instance directory when it crosses hosts.
    """

    path: str
    type: str
    virt_disk_size: int
    disk_size: int
    backing_file: str | None = None
    over_committed_disk_size: int = 0
    target: str = ""
    checksum: str = ""


# -- migrations -------------------------------------------------------------------------


@dataclass
class Migration(VirtObject):
    """The record of one migration, its status and its progress.

    Version history: 1.0 first versioned; 1.1 ``created_at`` / ``updated_at`` (ISO 8601
    UTC, from the database; not part of equality).
    """

    VERSION: ClassVar[str] = "1.1"
    obj_added_fields: ClassVar[dict[str, str]] = {"created_at": "1.1", "updated_at": "1.1"}

    instance_uuid: str
    source_host: str
    migration_type: MigrationType
    dest_host: str | None = None
    source_node: str | None = None
    dest_node: str | None = None
    status: MigrationStatus = MigrationStatus.ACCEPTED
    uuid: str = field(default_factory=_new_uuid)
    id: int | None = None
    old_flavor: Flavor | None = None
    new_flavor: Flavor | None = None
    progress: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    error: str = ""
    #: every max downtime (ms) the live-migration monitor applied, in order
    downtime_steps: list[int] = field(default_factory=list)
    created_at: str | None = field(default=None, compare=False)
    updated_at: str | None = field(default=None, compare=False)


@dataclass
class ColdMigrateData(VirtObject):
    """What the destination tells the source before ``migrate_disk_and_power_off``.

    Produced on the destination by ``ComputeDriver.prepare_migrate_disk_target`` (during
    ``prep_resize``) and handed to the source driver.  ``transport`` names a plugin of
    the ``virtsdk.disk_transports`` group and ``ticket`` is that plugin's opaque,
    JSON-safe data (address, port, one-time token, target directory...).
    """

    transport: str = ""
    ticket: dict[str, Any] = field(default_factory=dict)
    shared_storage: bool = False


@dataclass
class LiveMigrateData(VirtObject):
    """Data gathered by the live-migration checks and ``pre_live_migration``.

    Created on the destination by ``check_can_live_migrate_destination``, completed on
    the source by ``check_can_live_migrate_source``, completed again on the destination
    by ``pre_live_migration`` and finally consumed on the source by ``live_migration``.
    Everything here crosses hosts: the receiving side must validate it (hostnames,
    relative paths) before use.

    A driver that carries data of its own between the hosts subclasses this class
    (like Nova's ``LibvirtLiveMigrateData``) with typed fields and its own
    ``VERSION``; defining the subclass registers it for the RPC serializer when the
    driver module loads.  A process that never loaded the driver (a conductor
    forwarding the data from the destination to the source) decodes it as this base
    class and forwards the driver's fields unchanged (see :func:`from_primitive`).

    Version history: 1.0 first versioned; 2.0 ``driver_data`` (an untyped dict)
    removed in favour of typed driver subclasses.
    """

    VERSION: ClassVar[str] = "2.0"

    block_migration: bool | None = None
    disk_over_commit: bool = False
    is_shared_instance_path: bool | None = None
    is_shared_block_storage: bool | None = None
    instance_relative_path: str = ""
    filename: str = ""
    disk_available_mb: int = 0
    graphics_listen_addr_vnc: str | None = None
    graphics_listen_addr_spice: str | None = None
    serial_listen_addr: str | None = None
    serial_listen_ports: list[int] = field(default_factory=list)
    target_connect_addr: str | None = None
    vifs: list[VIF] = field(default_factory=list)
    bdms: list[BlockDeviceMapping] = field(default_factory=list)

    @classmethod
    def of(cls, data: LiveMigrateData | None) -> Self:
        """``data`` as this (driver) class: itself when it already is one, else a new
        object with the common fields of ``data`` (e.g. the base object a caller or
        another driver's check built) and this class's defaults for the rest."""
        if isinstance(data, cls):
            return data
        if data is None:
            return cls()
        common = {f.name for f in dataclasses.fields(LiveMigrateData)}
        return cls(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)
                      if f.name in common})


@dataclass
class JobStats(VirtObject):
    """A sample of a running live migration (libvirt's job stats, byte counts).

    ``job_type`` is one of ``none``, ``unbounded`` (running), ``completed``,
    ``failed``, ``cancelled``.  ``postcopy`` is true once the guest runs on the
    destination and pages are pulled from the source.

    ``downtime_ms`` is a measurement: the hypervisor's figure for a completed job,
    valid only when ``downtime_measured`` is true (0 and false when no measurement
    exists).  The downtime the hypervisor *expects* while the job runs is
    ``expected_downtime_ms``, an estimate.  ``timeline`` lists the convergence
    decisions taken so far (time, action, value, reason, and the numbers behind it).
    """

    job_type: str = "none"
    time_elapsed_ms: int = 0
    data_total: int = 0
    data_processed: int = 0
    data_remaining: int = 0
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    memory_bps: int = 0
    memory_dirty_rate: int = 0
    memory_iteration: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    downtime_ms: int = 0
    setup_time_ms: int = 0
    postcopy: bool = False
    #: the max downtime (ms) currently allowed; 0 while unknown (hypervisor default)
    max_downtime_ms: int = 0
    #: true when ``downtime_ms`` was measured by the hypervisor for the completed job
    downtime_measured: bool = False
    #: the hypervisor's estimate of the downtime a switch-over now would cost (ms)
    expected_downtime_ms: int = 0
    #: percent of guest CPU time taken away by migration throttling (0: none)
    cpu_throttle: int = 0
    #: convergence decisions so far, oldest first (see the live-migration monitor)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def progress(self) -> float:
        """Percent done, ``100 - remaining%`` (0 when nothing is known yet)."""
        if self.data_total <= 0:
            return 0.0
        return max(0.0, min(100.0, 100.0 - 100.0 * self.data_remaining / self.data_total))


@dataclass
class TransferProgress(VirtObject):
    """Progress of a disk transfer: bytes done of total and the current rate."""

    bytes_done: int
    bytes_total: int
    rate_bps: float = 0.0
    path: str = ""
