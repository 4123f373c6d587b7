"""Plugins: the one way virtsdk finds, checks and loads what is installed.

Every replaceable part is a class registered under a name in an entry-point group
(its base class, and where its options live):

- ``virtsdk.compute_drivers``: :class:`virtsdk.driver.ComputeDriver`, options in
  ``[<name>]``;
- ``virtsdk.convergence_policies``: :class:`virtsdk.live_migration.base.ConvergencePolicy`,
  configured from ``[live_migration]``;
- ``virtsdk.disk_transports``: :class:`virtsdk.transfer.base.DiskTransport`, options in
  ``[transport_<name>]`` (and the shared ``[disk_transfer]``);
- ``virtsdk.schedulers``: :class:`virtsdk.scheduler.base.Scheduler`, configured from
  ``[scheduler]``;
- ``virtsdk.cli_commands``: a function ``register(subparsers)`` (:func:`load_function`).

A plugin class derives from its group's base class (which derives from
:class:`Plugin`), sets :attr:`Plugin.name` to the name its entry point registers
(a class that does not is loaded as a subclass carrying that name) and declares its
own options in :meth:`Plugin.list_opts`; :func:`register_opts` registers them in
:meth:`Plugin.option_group` (every base class does so when the plugin is built, so
a plugin never registers options itself).

:func:`load` imports only the plugin asked for and raises one family of errors
(:class:`~virtsdk.exceptions.PluginError`): an unknown name lists what is installed,
an import failure names the entry point and the cause, an object of the wrong type
says what it should be, and two distributions claiming one name are both
named.  :func:`describe_all` lists a group without ever raising for a broken plugin.

The installed distributions are read afresh on every call (not memoised for the
life of the process), so a plugin installed while a cloud runs is found.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from oslo_config import cfg
from stevedore import driver as sd_driver
from stevedore.exception import NoMatches

from virtsdk.exceptions import (
    PluginConflict,
    PluginError,
    PluginLoadError,
    PluginNotFound,
    PluginTypeError,
)

COMPUTE_DRIVERS = "virtsdk.compute_drivers"
CONVERGENCE_POLICIES = "virtsdk.convergence_policies"
DISK_TRANSPORTS = "virtsdk.disk_transports"
SCHEDULERS = "virtsdk.schedulers"
CLI_COMMANDS = "virtsdk.cli_commands"

T = TypeVar("T")


class Plugin:
    """What every plugin class declares: its name and its options."""

    #: The entry-point name the class is registered under (see the module doc).
    name: ClassVar[str] = ""

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        """The plugin's own options, registered in :meth:`option_group`."""
        return []

    @classmethod
    def option_group(cls) -> str:
        """The oslo.config group of :meth:`list_opts` (the plugin's name by default)."""
        return cls.name


def register_opts(conf: cfg.ConfigOpts, cls: type[Plugin]) -> None:
    """Register ``cls``'s options in its group.  Idempotent: oslo.config treats
    registering an equal option again as a no-op."""
    opts = cls.list_opts()
    if not opts:
        return
    group = cfg.OptGroup(cls.option_group(), title=f"Options of {cls.name}")
    conf.register_group(group)
    conf.register_opts(opts, group=group)


@dataclass(frozen=True)
class Claim:
    """One distribution's entry point for a name."""

    distribution: str
    version: str
    entry_point: importlib.metadata.EntryPoint

    @property
    def target(self) -> str:
        return str(self.entry_point.value)


@dataclass
class PluginInfo:
    """One installed plugin as ``virtsdk drivers list`` shows it."""

    group: str
    name: str
    target: str
    distribution: str
    version: str
    available: bool
    error: str = ""
    plugin: type[Any] | None = None


def installed(group: str) -> dict[str, list[Claim]]:
    """Entry-point name -> every distribution's claim on it, read now."""
    claims: dict[str, list[Claim]] = {}
    seen: set[tuple[str, str, str]] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != group:
                continue
            key = (ep.name, dist_name.lower(), ep.value)
            if key in seen:  # the same distribution twice on sys.path
                continue
            seen.add(key)
            claims.setdefault(ep.name, []).append(Claim(dist_name, dist.version, ep))
    return claims


def names(group: str) -> list[str]:
    """The names installed in ``group``, sorted."""
    return sorted(installed(group))


class _ClaimedManager(sd_driver.DriverManager[Any]):
    """stevedore's loader over the entry points just read (see the module doc)."""

    def __init__(self, group: str, name: str, claim: Claim,
                 on_failure: Callable[[object, object, BaseException], None]) -> None:
        self._claimed = [claim.entry_point]
        super().__init__(group, name, invoke_on_load=False,
                         on_load_failure_callback=on_failure)

    def list_entry_points(self) -> list[importlib.metadata.EntryPoint]:
        return self._claimed


def _import(group: str, name: str, claims: dict[str, list[Claim]]) -> tuple[object, str]:
    """The object the single claim on ``name`` points to, and its target."""
    if name not in claims:
        raise PluginNotFound(group, name, list(claims))
    owners = claims[name]
    if len({c.distribution.lower() for c in owners}) > 1:
        raise PluginConflict(group, name,
                             [f"{c.distribution} {c.version} ({c.target})" for c in owners])
    claim = owners[0]
    failure: list[BaseException] = []

    def on_failure(_mgr: object, _ep: object, err: BaseException) -> None:
        failure.append(err)

    try:
        mgr = _ClaimedManager(group, name, claim, on_failure)
    except NoMatches as exc:
        cause: BaseException = failure[0] if failure else exc
        raise PluginLoadError(group, name, claim.target,
                              f"{type(cause).__name__}: {cause}") from cause
    return mgr.driver, claim.target


def _check(group: str, name: str, target: str, obj: object, base: type[T]) -> type[T]:
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginTypeError(group, name, target,
                              f"{obj!r} is not a subclass of {base.__module__}.{base.__name__}")
    if issubclass(base, Plugin) and getattr(obj, "name", name) != name:
        return _named(obj, name)
    return obj


_NAMED: dict[tuple[type[Any], str], type[Any]] = {}
_NAMED_LOCK = threading.Lock()


def _named(cls: type[T], name: str) -> type[T]:
    """A subclass of ``cls`` whose :attr:`Plugin.name` is ``name`` (one per pair, so
    loading twice gives the same class).  For a plugin class that does not declare
    the name its entry point registers: the entry-point name is what the plugin is
    called (its option group, its messages), and the loaded class is never changed."""
    with _NAMED_LOCK:
        named = _NAMED.get((cls, name))
        if named is None:
            namespace = {"name": name, "__module__": cls.__module__,
                         "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
            metaclass: Any = type(cls)  # ABCMeta for the plugin base classes
            named = _NAMED[(cls, name)] = metaclass(cls.__name__, (cls,), namespace)
        return named


def load(group: str, name: str, base: type[T]) -> type[T]:
    """The class registered as ``name`` in ``group``, checked to derive from ``base``.

    Raises :class:`~virtsdk.exceptions.PluginNotFound` (listing what is installed),
    :class:`~virtsdk.exceptions.PluginLoadError` (entry point and cause),
    :class:`~virtsdk.exceptions.PluginTypeError` or
    :class:`~virtsdk.exceptions.PluginConflict`.
    """
    obj, target = _import(group, name, installed(group))
    return _check(group, name, target, obj, base)


def load_function(group: str, name: str) -> Callable[..., Any]:
    """The callable registered as ``name`` (for groups of functions, such as
    ``virtsdk.cli_commands``); the same errors as :func:`load`."""
    obj, target = _import(group, name, installed(group))
    if not callable(obj) or isinstance(obj, type):
        raise PluginTypeError(group, name, target, f"{obj!r} is not a function")
    return obj


def describe_all(group: str, base: type[Any] | None = None) -> list[PluginInfo]:
    """Every plugin of ``group``, loadable or not, sorted by name (one read of the
    installed distributions).  Never raises for a broken plugin: it is listed with
    ``available=False`` and the error.  ``base=None``: a group of functions."""
    claims = installed(group)
    out = []
    for name, owners in sorted(claims.items()):
        first = owners[0]
        info = PluginInfo(group, name, first.target, first.distribution, first.version,
                          available=False)
        if len({c.distribution.lower() for c in owners}) > 1:
            info.distribution = ", ".join(sorted(c.distribution for c in owners))
        try:
            obj, target = _import(group, name, claims)
            if base is not None:
                info.plugin = _check(group, name, target, obj, base)
        except PluginError as exc:
            info.error = str(exc)
        else:
            info.available = True
        out.append(info)
    return out


__all__ = [
    "CLI_COMMANDS", "COMPUTE_DRIVERS", "CONVERGENCE_POLICIES", "DISK_TRANSPORTS",
    "SCHEDULERS", "Claim", "Plugin", "PluginInfo", "describe_all", "installed", "load",
    "load_function", "names", "register_opts",
]

