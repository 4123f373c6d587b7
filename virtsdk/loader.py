"""Find and load compute drivers through stevedore entry points.

Drivers register a :class:`~virtsdk.driver.ComputeDriver` subclass in the entry-point
group :data:`NAMESPACE`::

    [options.entry_points]
    virtsdk.compute_drivers =
        mydriver = virtsdk_mydriver.driver:MyDriver

Only the driver that is asked for is imported.  :func:`list_drivers` imports each one
to report its capabilities but never fails: a driver that cannot be imported is listed
as unavailable with the reason.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field

from oslo_config import cfg
from stevedore import driver as sd_driver
from stevedore import extension as sd_extension
from stevedore.exception import NoMatches

from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import (
    DriverConflict,
    DriverLoadError,
    DriverNotFound,
    DriverTypeError,
)

NAMESPACE = "virtsdk.compute_drivers"


@dataclass
class DriverEntry:
    """One installed driver as ``virtsdk drivers list`` shows it."""

    name: str
    target: str
    distribution: str
    version: str
    available: bool
    error: str = ""
    capabilities: dict[str, object] = field(default_factory=dict)
    summary: str = ""
    driver_class: type[ComputeDriver] | None = None


def _claims(namespace: str = NAMESPACE) -> dict[str, list[tuple[str, str, str]]]:
    """Entry-point name -> [(distribution, version, target)] for every claimant."""
    claims: dict[str, list[tuple[str, str, str]]] = {}
    seen: set[tuple[str, str, str]] = set()
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != namespace:
                continue
            key = (ep.name, dist_name.lower(), ep.value)
            if key in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(key)
            claims.setdefault(ep.name, []).append((dist_name, dist.version, ep.value))
    return claims


def _check_class(name: str, obj: object) -> type[ComputeDriver]:
    if not (isinstance(obj, type) and issubclass(obj, ComputeDriver)):
        raise DriverTypeError(name, obj)
    return obj


def load_driver_class(name: str, namespace: str = NAMESPACE) -> type[ComputeDriver]:
    """Import the driver class registered as ``name``.

    Raises DriverNotFound (naming what is installed), DriverConflict, DriverLoadError
    (naming the entry point and the cause) or DriverTypeError.
    """
    return _load_claimed(name, namespace, _claims(namespace))


def _load_claimed(name: str, namespace: str,
                  claims: dict[str, list[tuple[str, str, str]]]) -> type[ComputeDriver]:
    """:func:`load_driver_class` over an already gathered claims map."""
    if name not in claims:
        raise DriverNotFound(name, list(claims))
    owners = claims[name]
    if len({dist.lower() for dist, _, _ in owners}) > 1:
        raise DriverConflict(name, [f"{d} {v} ({t})" for d, v, t in owners])
    target = owners[0][2]
    failure: list[BaseException] = []

    def on_failure(_mgr: object, _ep: object, err: BaseException) -> None:
        failure.append(err)

    # stevedore memoises entry points per namespace for the life of the process; drop
    # that memo so a distribution added to sys.path since (a plugin installed while a
    # cloud runs, or a test's throw-away driver) is seen.  Its on-disk cache is keyed
    # on sys.path and file mtimes, so it stays valid.
    sd_extension.ExtensionManager.ENTRY_POINT_CACHE.pop(namespace, None)
    try:
        mgr = sd_driver.DriverManager(
            namespace,
            name,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
            conflict_resolver=sd_extension.ignore_conflicts,
        )
    except NoMatches as exc:
        if failure:
            raise DriverLoadError(name, target, failure[0]) from failure[0]
        raise DriverNotFound(name, list(claims)) from exc
    cls = _check_class(name, mgr.driver)
    cls.name = name
    return cls


def register_driver_opts(conf: cfg.ConfigOpts, driver_cls: type[ComputeDriver]) -> None:
    """Register the driver's options in its own group (named after the driver)."""
    group = cfg.OptGroup(driver_cls.name, title=f"Options of the {driver_cls.name} driver")
    conf.register_group(group)
    # registering an equal option twice is a no-op in oslo.config, so this is idempotent
    conf.register_opts(driver_cls.list_opts(), group=group)


def load_driver(name: str, conf: cfg.ConfigOpts, host: str) -> ComputeDriver:
    """Load driver ``name`` and build the instance that serves ``host``."""
    cls = load_driver_class(name)
    register_driver_opts(conf, cls)
    return cls(conf, host)


def list_drivers(namespace: str = NAMESPACE) -> list[DriverEntry]:
    """Every installed driver, loadable or not, sorted by name.  Never raises for a
    broken driver: it is reported with ``available=False`` and the reason."""
    entries = []
    claims = _claims(namespace)  # one scan of the installed distributions for all
    for name, owners in sorted(claims.items()):
        dist, version, target = owners[0]
        entry = DriverEntry(name, target, dist, version, available=False)
        if len({d.lower() for d, _, _ in owners}) > 1:
            entry.distribution = ", ".join(sorted(d for d, _, _ in owners))
            entry.error = str(DriverConflict(name, [f"{d} {v}" for d, v, _ in owners]))
            entries.append(entry)
            continue
        try:
            cls = _load_claimed(name, namespace, claims)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            entry.error = str(exc)
        else:
            desc = cls.describe()
            entry.available = True
            entry.capabilities = desc.capabilities
            entry.summary = desc.summary
            entry.driver_class = cls
        entries.append(entry)
    return entries
