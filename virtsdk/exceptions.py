"""Errors raised by virtsdk and by drivers.

Every error a user can see derives from :class:`VirtSDKError` and carries a message
that says what went wrong and, where it helps, what to do about it.  Drivers raise the
most specific class that fits; the compute manager uses the class to decide between
"roll back and restore the previous state" (:class:`MigrationPreCheckError`,
:class:`NotSupported`, anything deriving from :class:`RollbackError`) and "set the
instance to ERROR" (anything else).
"""

from __future__ import annotations

import enum
from typing import Any


def _jsonable(value: Any) -> Any:
    """A JSON-safe stand-in for one constructor argument (str() as a last resort)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error message never echoes a
    10 KB hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The suffix oslo.messaging gives the class of an error re-raised from a remote service.
REMOTE_SUFFIX = "_Remote"


class _RemoteRebuildable(type):
    """Metaclass of :class:`VirtSDKError`: lets an error cross an RPC call as itself.

    oslo.messaging sends an exception's ``args`` and ``kwargs`` attribute and the
    caller rebuilds it with ``cls(*args, **kwargs)``, where ``args`` is just the
    message.  Every error remembers the arguments it was constructed with;
    :attr:`VirtSDKError.kwargs` hands them to oslo.messaging as ``_remote``, and this
    ``__call__`` rebuilds the error from them, so constructors keep their own signature.
    """

    def __call__(cls, *args: Any, _remote: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        request_id = None
        if _remote is not None:
            args = tuple(_remote.get("args", ()))
            kwargs = dict(_remote.get("kwargs", {}))
            request_id = _remote.get("request_id")
        exc = super().__call__(*args, **kwargs)
        exc._ctor_arguments = (args, kwargs)
        if isinstance(request_id, str):
            exc.request_id = request_id
        return exc


class VirtSDKError(Exception, metaclass=_RemoteRebuildable):
    """Base class of every virtsdk error.

    ``str(error)`` is the error's own message, also when it was raised by another
    service and crossed an RPC call: the remote traceback stays in that service's log
    (:mod:`virtsdk.rpc.remote_errors`), under :attr:`request_id`.
    """

    #: The request id under which the service that raised this error logged its
    #: traceback; None for an error raised in this process.
    request_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # oslo.messaging re-raises a remote error as a subclass named ``<Class>_Remote``
        # whose __str__ appends the remote traceback to the message.  The traceback
        # was already logged by the serving service; keep str() the error's own
        # message.
        if cls.__name__.endswith(REMOTE_SUFFIX):
            for name in ("__str__", "__unicode__"):
                if name in cls.__dict__:
                    delattr(cls, name)

    @property
    def kwargs(self) -> dict[str, Any]:
        """What oslo.messaging sends so an RPC caller can rebuild this error."""
        args, kwargs = getattr(self, "_ctor_arguments", (self.args, {}))
        remote: dict[str, Any] = {"args": _jsonable(list(args)), "kwargs": _jsonable(kwargs)}
        if self.request_id is not None:
            remote["request_id"] = self.request_id
        return {"_remote": remote}


class Invalid(VirtSDKError):
    """Bad input: rejected before anything was touched."""


# -- plugin discovery (virtsdk.plugins) ---------------------------------------------------

#: What each entry-point group's plugins are called in messages.
PLUGIN_KINDS = {
    "virtsdk.compute_drivers": "compute driver",
    "virtsdk.convergence_policies": "convergence policy",
    "virtsdk.disk_transports": "disk transport",
    "virtsdk.schedulers": "scheduler",
    "virtsdk.cli_commands": "command",
}


def _kind(group: str) -> str:
    return PLUGIN_KINDS.get(group, f"{group} plugin")


class PluginError(Invalid):
    """A plugin that cannot be used; names the entry-point ``group`` and ``name``."""

    def __init__(self, group: str, name: str, message: str) -> None:
        self.group = group
        self.name = name
        super().__init__(message)


class PluginNotFound(PluginError):
    """No installed distribution registers ``name`` in ``group``."""

    def __init__(self, group: str, name: str, installed: list[str]) -> None:
        self.installed = sorted(installed)
        super().__init__(group, name,
                         f"no {_kind(group)} named {name!r} is installed (entry-point group "
                         f"{group}; installed: {', '.join(self.installed) or 'none'})")


class _EntryPointError(PluginError):
    """An error about what one entry point (``name = target`` in ``group``) names."""

    def __init__(self, group: str, name: str, target: str, problem: str) -> None:
        self.target = target
        super().__init__(group, name,
                         f"{_kind(group)} {name!r} (entry point {name} = {target} in group "
                         f"{group}) {problem}")


class PluginLoadError(_EntryPointError):
    """The entry point of ``name`` failed to import; names its target and the cause."""

    def __init__(self, group: str, name: str, target: str, cause: str) -> None:
        #: ``Type: message`` of what the import raised (a string, so it crosses RPC)
        self.cause = cause
        super().__init__(group, name, target, f"failed to load: {cause}")


class PluginTypeError(_EntryPointError):
    """The entry point of ``name`` names something that is not a plugin of its group."""

    def __init__(self, group: str, name: str, target: str, reason: str) -> None:
        super().__init__(group, name, target, f"is not usable: {reason}")


class PluginConflict(PluginError):
    """More than one distribution registers ``name`` in ``group``."""

    def __init__(self, group: str, name: str, distributions: list[str]) -> None:
        self.distributions = sorted(distributions)
        super().__init__(group, name,
                         f"{_kind(group)} name {name!r} is claimed by more than one "
                         f"distribution: {', '.join(self.distributions)}; uninstall all "
                         "but one")


class NotSupported(VirtSDKError):
    """A driver does not offer a feature.  Names the driver and the feature."""

    def __init__(self, driver: str, feature: str, reason: str = "") -> None:
        self.driver = driver
        self.feature = feature
        msg = f"driver {driver!r} does not support {feature}"
        if reason:
            msg += f": {reason}"
        super().__init__(msg)


class _DriverFault(VirtSDKError):
    """Base of the errors a driver raises in a named situation.

    Every one takes the message plus two explicit, typed fields, which also cross RPC:
    ``instance_uuid`` (the instance concerned) and ``host`` (the host that refused or
    failed).  Both may be left out when they are not known.
    """

    def __init__(self, message: str, *, instance_uuid: str | None = None,
                 host: str | None = None) -> None:
        # a subclass may have set its own values before calling this constructor
        if instance_uuid is not None or not hasattr(self, "instance_uuid"):
            self.instance_uuid = instance_uuid
        if host is not None or not hasattr(self, "host"):
            self.host = host
        super().__init__(message)


# -- input validation -------------------------------------------------------------------


class InvalidHostname(Invalid):
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__(f"invalid hostname {shown(hostname, 260)}")


class UnsafePath(Invalid):
    def __init__(self, path: str, root: str) -> None:
        self.path = path
        self.root = root
        super().__init__(f"path {path!r} escapes the instances directory {root!r}")


class UnsafeXML(Invalid):
    """XML that the hardened parser refused (entities, DTDs, network access)."""


class InvalidFlavor(Invalid):
    pass


class InvalidInput(Invalid):
    """A user-supplied field broke its rule (type, length, characters or range).

    Raised by the API before anything is read or written; ``field`` names the field
    (``"instance name"``, ``"flavor memory_mb"``), ``reason`` says which rule.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class InvalidFlavorInput(InvalidInput, InvalidFlavor):
    """A flavor field broke its rule: both an :class:`InvalidInput` and an
    :class:`InvalidFlavor`."""


class FlavorNotFound(Invalid):
    pass


class ResizeShrinkNotAllowed(_DriverFault, Invalid):
    """Raised by ``migrate_disk_and_power_off`` (and the API), before anything is
    touched, when the new flavor would make a disk smaller."""


class InstanceNotFound(VirtSDKError):
    """Raised by ``get_info``, ``power_on``/``power_off``, ``observe_disk`` and any
    method that needs the instance, when this host does not have it."""

    def __init__(self, instance: str, host: str | None = None) -> None:
        self.instance = instance
        self.host = host
        where = f" on host {host!r}" if host else ""
        super().__init__(f"instance {instance!r} not found{where}")


class InstanceExists(Invalid):
    """``spawn`` was asked to create an instance this host already has."""


class HostNotFound(Invalid):
    pass


class MigrationNotFound(VirtSDKError):
    pass


class DrainNotFound(VirtSDKError):
    """No drain with that id (or no guest of that drain)."""


class DrainRefused(Invalid):
    """A drain that cannot start: no destination could take any of its guests."""


class InstanceInvalidState(Invalid):
    """The instance's ``attr`` is ``state``, which forbids ``action`` (a driver raises
    it e.g. from ``spawn`` for an instance the host already holds)."""

    def __init__(self, instance: str, attr: str, state: object, action: str) -> None:
        self.instance = instance
        self.attr = attr
        self.action = action
        self.state = state
        super().__init__(
            f"cannot {action} instance {instance!r} while {attr} is {state!r}"
        )


class Conflict(VirtSDKError):
    """Another task already runs on the object (optimistic concurrency lost)."""


class UnexpectedTaskState(Conflict):
    def __init__(self, instance: str, expected: object, actual: object) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"instance {instance!r}: expected task_state {expected!r} but found "
            f"{actual!r}; another request is already acting on it"
        )


# -- migration --------------------------------------------------------------------------


class MigrationError(VirtSDKError):
    """A migration failed."""


class RollbackError(MigrationError):
    """A failure after which the previous state was restored (Nova's rollback fault)."""


class MigrationPreCheckError(_DriverFault, RollbackError):
    """Raised by ``check_can_live_migrate_destination`` / ``_source`` (and
    ``pre_live_migration``) when the migration cannot go ahead; nothing moved yet."""


class NoValidHost(MigrationError):
    pass


class RescheduledError(MigrationError):
    """A destination refused work in a way that lets the conductor try the next host."""


class DestinationDiskExists(MigrationPreCheckError):
    """Raised by ``pre_live_migration`` and ``prepare_migrate_disk_target`` when the
    destination already holds the instance's directory or disks."""


class InsufficientResources(_DriverFault, RescheduledError):
    """Raised by ``spawn`` / ``finish_migration`` / ``pre_live_migration`` when the host
    cannot fit the instance; the conductor may try another host."""


class ComputeServiceUnavailable(MigrationPreCheckError):
    pass


class LiveMigrationAborted(_DriverFault, MigrationError):
    """Raised by ``live_migration`` (after ``recover_method``) when the job was
    cancelled by ``live_migration_abort`` or a policy."""


class MigrationTimeout(_DriverFault, MigrationError):
    """A migration (or a wait for one) did not finish in time."""


class DiskTransferError(_DriverFault, MigrationError):
    """Raised by ``migrate_disk_and_power_off`` / ``finish_migration`` when a disk
    transfer failed; the source disks are untouched."""


class TransferAuthError(DiskTransferError):
    """The transfer's ticket or token was unknown, stale or wrong."""


class TransferIntegrityError(DiskTransferError):
    """A disk arrived damaged or incomplete (checksum or size mismatch)."""


class InjectedFault(VirtSDKError):
    """Raised by a driver's fault injection (tests and demos only)."""


class BrokerUnreachable(VirtSDKError):
    """The message broker of ``[DEFAULT] transport_url`` could not be reached in
    time (raised by clients that do not wait for it: the operator CLI, ``virtsdk
    demo``, :meth:`virtsdk.cloud.EmbeddedCloud.start`)."""
