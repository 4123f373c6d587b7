"""virtsdk's oslo.config options.

Each module here declares the options of one area and a ``register_opts(conf)``;
:func:`register_all` registers them all, and :mod:`virtsdk.conf.opts` lists them for
``oslo-config-generator --namespace virtsdk``.  Driver options are not here: every
driver declares its own group (``ComputeDriver.list_opts``).
"""

from __future__ import annotations

from types import ModuleType

from oslo_config import cfg

from virtsdk import rpc
from virtsdk.conf import compute, database, default, drain, scheduler, upgrade_levels
from virtsdk.live_migration import opts as live_migration_opts

CONF = cfg.CONF

_MODULES = [default, database, compute, scheduler, drain, upgrade_levels, rpc,
            live_migration_opts]


def register_all(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    for module in _MODULES:
        module.register_opts(conf)
    return conf


def add_module(module: ModuleType) -> None:
    """Add an options module (one with ``register_opts`` and ``list_opts``)."""
    if module not in _MODULES:
        _MODULES.append(module)
