"""Registering an option group so that ConfigOpts instances never share state."""

from __future__ import annotations

from oslo_config import cfg


def register_group(conf: cfg.ConfigOpts, group: cfg.OptGroup, opts: list[cfg.Opt]) -> None:
    """Register ``opts`` under a *new* copy of ``group`` on ``conf`` (idempotent).

    oslo.config keeps per-conf state (overrides) inside the OptGroup object it is given,
    so one module-level group registered on two ConfigOpts (two embedded hosts, two
    tests) would leak one's overrides into the other.
    """
    conf.register_group(cfg.OptGroup(group.name, title=group.title))
    conf.register_opts(opts, group=group.name)
