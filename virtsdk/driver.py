"""The ComputeDriver interface every hypervisor driver implements.

Who calls what
--------------
A compute manager (:mod:`virtsdk.compute.manager`) runs on every host and owns exactly
one driver instance, loaded by :func:`virtsdk.plugins.load` (group ``virtsdk.compute_drivers``)
and built with that host's name
and the global :class:`oslo_config.cfg.ConfigOpts`.  The manager calls the driver; a
driver never calls the manager or another host's driver.  Anything one host must tell
another travels in the return values listed below and is carried over RPC by the
manager (so it must be a :class:`virtsdk.objects.VirtObject` or JSON-safe).

Each method's docstring names the host it runs on ("source", "destination") and what
it must guarantee.  Methods for features a driver does not offer keep the default
implementation, which raises :class:`virtsdk.exceptions.NotSupported` naming the driver
and the feature; the manager turns that into a clean rollback.

Argument order
--------------
Every method takes ``context`` first; the cold-migration methods that receive the
migration record take it next (``context, migration, instance, ...``), the others
continue with ``instance``; then what the step needs (``network_info``, ``disk_info``,
``migrate_data``), then keyword-style options with defaults (``power_on``,
``destroy_disks``, ``block_migration``).

Volumes are not part of this interface: virtsdk drivers manage local disks only, so
there is no ``block_device_info`` argument (the manager never had volume information
to pass).

Cold migration / resize (the whole chain: docs/flows.md)::

    dest:   prepare_migrate_disk_target()          during prep_resize
    source: migrate_disk_and_power_off()           resize_instance
    dest:   finish_migration()                     finish_resize
    then either
    source: confirm_migration()                    confirm_resize
    or
    dest:   destroy()  +  source: finish_revert_migration()   revert_resize

Live migration::

    dest:   check_can_live_migrate_destination()
    source: check_can_live_migrate_source()
    dest:   cleanup_live_migration_destination_check()
    dest:   pre_live_migration()                   RPC call from the source manager
    source: live_migration()  -> post_method | recover_method (exactly one)
    source: post_live_migration(), dest: post_live_migration_at_destination(),
    source: post_live_migration_at_source()
    or on failure
    source: rollback_live_migration_at_source(), dest: rollback_live_migration_at_destination()
    any time while running: live_migration_abort(), live_migration_force_complete()
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.exceptions import NotSupported
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    HostResources,
    ImageMeta,
    Instance,
    InstanceInfo,
    JobStats,
    LiveMigrateData,
    Migration,
    NetworkInfo,
    TransferProgress,
)
from virtsdk.plugins import Plugin, register_opts
from virtsdk.states import PowerState


def feature(group: str, summary: str, methods: tuple[str, ...] = (),
            may_override: tuple[str, ...] = (), default: bool = False) -> bool:
    """Declare one :class:`Capabilities` flag (used only inside that class).

    ``methods`` must be overridden by a driver claiming the flag; ``may_override`` are
    the hooks of the same feature that have a harmless default.  Everything else that
    describes features is derived from these declarations: :data:`OPTIONAL_METHODS`,
    :func:`feature_methods`, the conformance kit's checks and ``virtsdk drivers matrix``.
    """
    return field(default=default, metadata={"group": group, "summary": summary,
                                             "methods": methods,
                                             "may_override": may_override})


_COLD = ("migrate_disk_and_power_off", "finish_migration", "confirm_migration",
         "finish_revert_migration")
_LIVE = ("check_can_live_migrate_destination", "check_can_live_migrate_source",
         "pre_live_migration", "live_migration")


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do.  Declared once per driver class; read by the manager,
    the scheduler, ``virtsdk drivers show`` and the conformance kit.

    This class is the single declaration of the features: each flag names the matrix
    group it belongs to and the methods a driver claiming it must override.
    """

    supports_cold_migration: bool = feature(
        "cold", "cold migration to another host (disks copied, guest restarted)", _COLD,
        ("get_instance_disk_info", "prepare_migrate_disk_target"))
    supports_resize: bool = feature(
        "resize", "resize: cold migration onto a bigger flavor, revertable", _COLD)
    supports_migrate_to_same_host: bool = feature(
        "resize", "resize onto the host the instance already runs on", _COLD)
    supports_live_migration: bool = feature(
        "live", "live migration of a running guest", _LIVE,
        ("cleanup_live_migration_destination_check", "post_live_migration",
         "post_live_migration_at_source", "post_live_migration_at_destination",
         "rollback_live_migration_at_source", "rollback_live_migration_at_destination"))
    supports_block_migration: bool = feature(
        "block", "live migration that copies local disks (no shared storage)",
        (*_LIVE, "get_instance_disk_info"))
    supports_post_copy: bool = feature(
        "post-copy", "switching a live migration to post-copy", _LIVE)
    supports_auto_converge: bool = feature(
        "auto-converge", "throttling the guest's vCPUs so a live migration converges", _LIVE)
    supports_live_migration_abort: bool = feature(
        "abort", "aborting a running live migration", ("live_migration_abort",))
    supports_live_migration_force_complete: bool = feature(
        "force-complete", "forcing a running live migration to complete",
        ("live_migration_force_complete",))
    supports_shared_storage_detection: bool = feature(
        "shared storage detection", "detecting storage shared between two hosts",
        ("check_can_live_migrate_destination", "check_can_live_migrate_source"))
    has_imagecache: bool = False
    image_formats: tuple[str, ...] = ("raw",)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def features(cls) -> list[dataclasses.Field[bool]]:
        """The feature flags (those declared with :func:`feature`), in order."""
        return [f for f in dataclasses.fields(cls) if "group" in f.metadata]

    def claimed(self) -> list[str]:
        """The feature flags this driver claims."""
        return [f.name for f in self.features() if getattr(self, f.name) is True]


def feature_methods(flag: str) -> tuple[str, ...]:
    """The methods a driver claiming ``flag`` must override."""
    for f in Capabilities.features():
        if f.name == flag:
            return tuple(f.metadata["methods"])
    raise KeyError(flag)


@dataclass(frozen=True)
class DiskObservation:
    """What :meth:`ComputeDriver.observe_disk` reads back from a guest's root disk."""

    #: the bytes found where :meth:`ComputeDriver.write_disk_marker` writes
    marker: bytes
    #: the root disk's virtual size in bytes, as the hypervisor sees it
    size: int


class PostMethod(Protocol):
    """Called by a driver's ``live_migration`` once the guest runs on ``dest``."""

    def __call__(
        self,
        context: RequestContext,
        instance: Instance,
        dest: str,
        block_migration: bool,
        migrate_data: LiveMigrateData,
    ) -> None: ...


class RecoverMethod(Protocol):
    """Called by a driver's ``live_migration`` when the guest stays on the source."""

    def __call__(
        self,
        context: RequestContext,
        instance: Instance,
        dest: str,
        migrate_data: LiveMigrateData,
    ) -> None: ...


F = TypeVar("F", bound=Callable[..., Any])


def stub(fn: F) -> F:
    """Mark a scaffolded method that only defers to the default (``virtsdk drivers
    new`` writes every method this way); :meth:`ComputeDriver.implemented_methods`
    does not count it as implemented."""
    fn.__virtsdk_stub__ = True  # type: ignore[attr-defined]
    return fn


ProgressCallback = Callable[[JobStats], None]
TransferCallback = Callable[[TransferProgress], None]


@dataclass
class DriverDescription:
    """What ``virtsdk drivers show`` prints about a driver class."""

    name: str
    summary: str
    capabilities: dict[str, object] = field(default_factory=dict)
    implemented: list[str] = field(default_factory=list)


class ComputeDriver(Plugin, abc.ABC):
    """Base class of every hypervisor driver.

    Subclasses set :attr:`capabilities`, implement the abstract lifecycle methods and
    override the migration methods they support.  A driver's options live in its own
    oslo.config group, named after its entry point (:attr:`name`, which the class
    sets to the name its entry point registers); it declares them in :meth:`list_opts`
    and reads them through :attr:`config_group`.  They are registered when the driver
    is built.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, conf: cfg.ConfigOpts, host: str) -> None:
        register_opts(conf, type(self))
        self.conf = conf
        self.host = host

    # -- configuration & description ----------------------------------------------------

    @property
    def config_group(self) -> cfg.ConfigOpts.GroupAttr:
        """This driver's options (group :meth:`option_group`, ``[<name>]``)."""
        group: cfg.ConfigOpts.GroupAttr = getattr(self.conf, self.option_group())
        return group

    @classmethod
    def implemented_methods(cls) -> list[str]:
        """The optional interface methods this driver overrides (its feature matrix)."""
        out = []
        for attr in OPTIONAL_METHODS:
            mine = getattr(cls, attr)
            if mine is not getattr(ComputeDriver, attr) and not getattr(
                    mine, "__virtsdk_stub__", False):
                out.append(attr)
        return out

    @classmethod
    def describe(cls) -> DriverDescription:
        doc = (cls.__doc__ or "").strip().splitlines()
        return DriverDescription(
            name=cls.name,
            summary=doc[0] if doc else "",
            capabilities=cls.capabilities.as_dict(),
            implemented=cls.implemented_methods(),
        )

    def _unsupported(self, feature: str) -> NotSupported:
        return NotSupported(self.name, feature)

    # -- service lifecycle ---------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Called by the manager once when its service starts, before any other call."""

    def cleanup_host(self, host: str) -> None:
        """Called by the manager when its service stops."""

    # -- instance lifecycle --------------------------------------------------------------

    @abc.abstractmethod
    def spawn(
        self,
        context: RequestContext,
        instance: Instance,
        image_meta: ImageMeta,
        network_info: NetworkInfo,
        power_on: bool = True,
    ) -> None:
        """Create and (by default) start ``instance`` on this host.

        Called by the manager on the host the scheduler chose.  On failure the driver
        must leave nothing behind (no domain, no files).
        """

    @abc.abstractmethod
    def destroy(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        destroy_disks: bool = True,
    ) -> None:
        """Stop and remove ``instance`` from this host; keep its disks if asked to.

        Idempotent: destroying an instance this host does not have is not an error.
        """

    @abc.abstractmethod
    def power_off(self, instance: Instance, timeout: int = 0, retry_interval: int = 0) -> None:
        """Stop the guest: ask it to shut down cleanly, resending the request every
        ``retry_interval`` seconds for up to ``timeout`` seconds, then force it off.
        ``timeout == 0`` forces it off at once.  Returns once it is off."""

    @abc.abstractmethod
    def power_on(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """Start a stopped guest; returns once it runs."""

    @abc.abstractmethod
    def get_info(self, instance: Instance) -> InstanceInfo:
        """Report the instance's power state; raises InstanceNotFound if absent."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Names of the instances this host runs or has defined."""

    @abc.abstractmethod
    def get_available_resource(self, nodename: str | None = None) -> HostResources:
        """This host's capacity and current usage, for the scheduler."""

    def instance_exists(self, instance: Instance) -> bool:
        return instance.name in self.list_instances()

    def list_instance_uuids_on_host(self) -> dict[str, list[str]]:
        """This host, for the reconcile task and ``virtsdk audit``: every instance
        uuid of which this hypervisor holds anything, mapped to what it holds, from
        :data:`HELD_KINDS`: ``instance`` (a defined guest), ``resize_copy`` (the
        source's kept copy of a cold migration), ``incoming`` (a prepared target,
        received disks or a live-migration placeholder), ``leftover`` (disks a
        block migration left on its source).  Optional: the default raises
        NotSupported and the audit reports the host as not auditable."""
        raise self._unsupported("listing what the hypervisor holds (audit)")

    def get_instance_disk_info(
        self, instance: Instance
    ) -> list[DiskInfo]:
        """The instance's local disks (volumes excluded)."""
        raise self._unsupported("get_instance_disk_info")

    def plug_vifs(self, instance: Instance, network_info: NetworkInfo) -> None:
        """Connect the instance's VIFs on this host (may be a no-op)."""

    def unplug_vifs(self, instance: Instance, network_info: NetworkInfo) -> None:
        """Disconnect the instance's VIFs on this host (may be a no-op)."""

    def cleanup(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Remove what is left of an instance on this host after it moved away."""
        self.destroy(context, instance, network_info, destroy_disks)

    # -- observation hooks (read by the conformance kit, never by the manager) ------------
    #
    # The kit checks outcomes, not calls: after every step it asks the hypervisor what
    # really happened.  These four hooks must report the hypervisor's truth (processes,
    # domains, files), not the driver's own records, and must not change anything.

    #: how many bytes :meth:`write_disk_marker` may be given
    MARKER_SIZE: ClassVar[int] = 64

    def observe_guests(self) -> dict[str, PowerState]:
        """Every guest this host really has in memory, by instance uuid: running or
        paused (``PowerState.RUNNING`` / ``PowerState.PAUSED``); stopped or merely
        defined guests are left out.  A guest paused at the end of a live migration
        counts: the kit requires exactly one running copy and no paused leftovers."""
        raise self._unsupported("observation hook observe_guests")

    def observe_footprint(self, instance: Instance) -> list[str]:
        """Everything this host holds for ``instance`` (its definition, disk files,
        processes, received or kept copies, reservations), one short description each;
        empty when nothing of it is left here."""
        raise self._unsupported("observation hook observe_footprint")

    def write_disk_marker(self, instance: Instance, marker: bytes) -> None:
        """Write ``marker`` (at most :attr:`MARKER_SIZE` bytes) into the instance's
        root disk at a fixed place its guest does not use.  Called only while no
        migration of the instance runs; the guest may be running or stopped."""
        raise self._unsupported("observation hook write_disk_marker")

    def observe_disk(self, instance: Instance) -> DiskObservation:
        """Read back the marker place and the size of the instance's root disk on this
        host; raises :class:`~virtsdk.exceptions.InstanceNotFound` if absent."""
        raise self._unsupported("observation hook observe_disk")

    # -- cold migration / resize ---------------------------------------------------------

    def prepare_migrate_disk_target(
        self, context: RequestContext, migration: Migration, instance: Instance, flavor: Flavor
    ) -> ColdMigrateData:
        """Destination, during ``prep_resize``: get ready to receive the disks.

        Returns what the source needs to send them (a transport name and its ticket).
        Must not touch anything the instance already has on this host.
        """
        return ColdMigrateData()

    def abort_migrate_disk_target(
        self, context: RequestContext, instance: Instance, migrate_data: ColdMigrateData
    ) -> None:
        """Destination: undo :meth:`prepare_migrate_disk_target` after a failure."""

    def migrate_disk_and_power_off(
        self,
        context: RequestContext,
        instance: Instance,
        dest: str,
        flavor: Flavor,
        network_info: NetworkInfo,
        timeout: int = 0,
        retry_interval: int = 0,
        migrate_data: ColdMigrateData | None = None,
        progress: TransferCallback | None = None,
    ) -> list[DiskInfo]:
        """Source, in ``resize_instance``: power off and send the disks to ``dest``.

        Must refuse (raising :class:`~virtsdk.exceptions.ResizeShrinkNotAllowed`)
        before touching anything when ``flavor`` would shrink a disk.  On any failure
        the source instance must be left as it was, able to start again.  Returns the
        disks sent, for ``finish_migration``.
        """
        raise self._unsupported("cold migration")

    def finish_migration(
        self,
        context: RequestContext,
        migration: Migration,
        instance: Instance,
        disk_info: list[DiskInfo],
        network_info: NetworkInfo,
        image_meta: ImageMeta,
        resize_instance: bool,
        power_on: bool = True,
    ) -> None:
        """Destination, in ``finish_resize``: build the instance from the received disks
        (grown to ``instance.flavor`` when ``resize_instance``) and start it if asked."""
        raise self._unsupported("cold migration")

    def confirm_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """Source, in ``confirm_resize``: delete the kept copy of the instance."""
        raise self._unsupported("cold migration")

    def finish_revert_migration(
        self,
        context: RequestContext,
        migration: Migration,
        instance: Instance,
        network_info: NetworkInfo,
        power_on: bool = True,
    ) -> None:
        """Source, in ``revert_resize``: restore the kept copy and start it if asked.
        Also used to recover the source after a failed ``migrate_disk_and_power_off``."""
        raise self._unsupported("cold migration")

    # -- live migration ------------------------------------------------------------------

    def check_can_live_migrate_destination(
        self,
        context: RequestContext,
        instance: Instance,
        src_resources: HostResources,
        dst_resources: HostResources,
        block_migration: bool | None = None,
        disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        """Destination: can this host take the instance?  Returns the check data
        (e.g. the name of a temporary file for the shared-storage test); raises
        :class:`~virtsdk.exceptions.MigrationPreCheckError` if not."""
        raise self._unsupported("live migration")

    def cleanup_live_migration_destination_check(
        self, context: RequestContext, dest_check_data: LiveMigrateData
    ) -> None:
        """Destination: remove what :meth:`check_can_live_migrate_destination` left."""

    def check_can_live_migrate_source(
        self,
        context: RequestContext,
        instance: Instance,
        dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Source: completes the check data (shared storage seen from here, block
        migration chosen when storage is not shared); raises MigrationPreCheckError."""
        raise self._unsupported("live migration")

    def pre_live_migration(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None,
        migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Destination, by RPC call from the source manager: prepare directories, disks,
        volumes and VIFs; return ``migrate_data`` completed with this host's listen
        addresses.  Must refuse an instance directory that already exists."""
        raise self._unsupported("live migration")

    def live_migration(
        self,
        context: RequestContext,
        instance: Instance,
        dest: str,
        post_method: PostMethod,
        recover_method: RecoverMethod,
        block_migration: bool = False,
        migrate_data: LiveMigrateData | None = None,
        migration: Migration | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Source: move the running guest to ``dest``; blocks until the job ends.

        Must validate ``dest`` before any hypervisor call; refused input (an invalid
        ``dest``, a migration already running) may raise before either callback, as
        nothing started.  Once the job has started it must end by calling exactly one
        of ``post_method`` (guest runs on dest) or ``recover_method`` (guest still runs
        here), then return (it re-raises the failure after ``recover_method``).
        ``progress`` receives job-stats samples.
        """
        raise self._unsupported("live migration")

    def live_migration_abort(self, instance: Instance) -> None:
        """Source, from another thread while :meth:`live_migration` runs: cancel."""
        raise self._unsupported("aborting a live migration")

    def live_migration_force_complete(self, instance: Instance) -> None:
        """Source, while :meth:`live_migration` runs: make it finish now (post-copy or
        pause the guest)."""
        raise self._unsupported("forcing a live migration to complete")

    def post_live_migration(
        self,
        context: RequestContext,
        instance: Instance,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Source, after success: disconnect volumes the instance used here."""

    def post_live_migration_at_source(
        self, context: RequestContext, instance: Instance, network_info: NetworkInfo
    ) -> None:
        """Source, after success: unplug VIFs and remove what is left here."""

    def post_live_migration_at_destination(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        block_migration: bool = False,
    ) -> None:
        """Destination, after success: make the instance fully this host's (persistent
        definition, bookkeeping)."""

    def rollback_live_migration_at_source(
        self, context: RequestContext, instance: Instance, migrate_data: LiveMigrateData
    ) -> None:
        """Source, after failure: the guest keeps running here; undo source-side prep."""

    def rollback_live_migration_at_destination(
        self,
        context: RequestContext,
        instance: Instance,
        network_info: NetworkInfo,
        destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Destination, after failure: remove everything pre_live_migration created,
        leaving this host clean."""


#: What :meth:`ComputeDriver.list_instance_uuids_on_host` reports per instance.
HELD_INSTANCE, HELD_RESIZE_COPY, HELD_INCOMING, HELD_LEFTOVER = (
    "instance", "resize_copy", "incoming", "leftover")
HELD_KINDS: tuple[str, ...] = (HELD_INSTANCE, HELD_RESIZE_COPY, HELD_INCOMING,
                               HELD_LEFTOVER)

#: The observation hooks the conformance kit reads the hypervisor's truth with.
OBSERVATION_HOOKS: tuple[str, ...] = ("observe_guests", "observe_footprint",
                                      "write_disk_marker", "observe_disk")

#: Every overridable feature method, derived from the :class:`Capabilities` declaration
#: (used by :meth:`ComputeDriver.implemented_methods` and the fake driver's fault steps).
OPTIONAL_METHODS: tuple[str, ...] = tuple(dict.fromkeys(
    m for f in Capabilities.features()
    for m in (*f.metadata["methods"], *f.metadata["may_override"])))
