"""Options of the ``[database]`` group: where the orchestration layer keeps its records."""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.conf.groups import register_group

group = cfg.OptGroup("database", title="Persistence of instances, migrations and services")

opts = [
    cfg.StrOpt("connection", default=None,
               sample_default="sqlite:///$state_path/virtsdk.sqlite",
               help="SQLAlchemy URL of the database.  Unset: an SQLite file "
                    "``virtsdk.sqlite`` under ``[DEFAULT] state_path``."),
    cfg.BoolOpt("echo", default=False, help="Log every SQL statement (debugging)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    register_group(conf, group, opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(group.name, opts)]
