"""Options of the ``[database]`` group: where the orchestration layer keeps its records."""

from __future__ import annotations

from oslo_config import cfg

group = cfg.OptGroup("database", title="Persistence of instances, migrations and services")

opts = [
    cfg.StrOpt("connection", default=None,
               sample_default="sqlite:///$state_path/virtsdk.sqlite",
               help="SQLAlchemy URL of the database.  Unset: an SQLite file "
                    "``virtsdk.sqlite`` under ``[DEFAULT] state_path``."),
    cfg.BoolOpt("echo", default=False, help="Log every SQL statement (debugging)."),
]


def _fresh(group: cfg.OptGroup) -> cfg.OptGroup:
    """A new OptGroup per ConfigOpts: oslo.config keeps per-conf state (overrides)
    inside the group object, so sharing one between confs would leak overrides."""
    return cfg.OptGroup(group.name, title=group.title)


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_fresh(group))
    conf.register_opts(opts, group=group.name)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(group.name, opts)]
