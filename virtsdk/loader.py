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
class DriverEntry(plugins.PluginInfo):
    """One installed driver with its description, as ``virtsdk drivers list`` shows it."""

    capabilities: dict[str, object] = field(default_factory=dict)
    summary: str = ""

    @property
    def driver_class(self) -> type[ComputeDriver] | None:
        return self.plugin


def load_driver_class(name: str) -> type[ComputeDriver]:
    return plugins.load(plugins.COMPUTE_DRIVERS, name, ComputeDriver)


def register_driver_opts(conf: cfg.ConfigOpts, driver_cls: type[ComputeDriver]) -> None:
    plugins.register_opts(conf, driver_cls)


def load_driver(name: str, conf: cfg.ConfigOpts, host: str) -> ComputeDriver:
    return load_driver_class(name)(conf, host)


def list_drivers() -> list[DriverEntry]:
    out = []
    for info in plugins.describe_all(plugins.COMPUTE_DRIVERS, ComputeDriver):
        entry = DriverEntry(**vars(info))
        if info.plugin is not None:
            desc = info.plugin.describe()
            entry.capabilities, entry.summary = desc.capabilities, desc.summary
        out.append(entry)
    return out
