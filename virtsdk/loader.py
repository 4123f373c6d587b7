"""Old compute-driver loader, now a thin layer over :mod:`virtsdk.plugins`.

Kept only so that code written against it keeps working while it is updated; new
code calls ``plugins.load(plugins.COMPUTE_DRIVERS, name, ComputeDriver)``,
``plugins.describe_all(...)`` and ``plugins.register_opts(...)``, whose errors are
the :class:`~virtsdk.exceptions.PluginError` family.  Remove once nothing imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oslo_config import cfg

from virtsdk import plugins
from virtsdk.driver import ComputeDriver


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


def load_driver_class(name: str) -> type[ComputeDriver]:
    return plugins.load(plugins.COMPUTE_DRIVERS, name, ComputeDriver)


def register_driver_opts(conf: cfg.ConfigOpts, driver_cls: type[ComputeDriver]) -> None:
    plugins.register_opts(conf, driver_cls)


def load_driver(name: str, conf: cfg.ConfigOpts, host: str) -> ComputeDriver:
    return load_driver_class(name)(conf, host)


def list_drivers() -> list[DriverEntry]:
    out = []
    for info in plugins.describe_all(plugins.COMPUTE_DRIVERS, ComputeDriver):
        entry = DriverEntry(info.name, info.target, info.distribution, info.version,
                            info.available, info.error, driver_class=info.plugin)
        if info.plugin is not None:
            desc = info.plugin.describe()
            entry.capabilities, entry.summary = desc.capabilities, desc.summary
        out.append(entry)
    return out
