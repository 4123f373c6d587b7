"""What the operator commands (``virtsdk server|migration``, ``virtsdk-manage``)
share: building the cloud's :class:`~virtsdk.api.API` from the configuration, and
printing records."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from oslo_config import cfg
from rich.console import Console
from rich.table import Table

from virtsdk import rpc
from virtsdk.api import API
from virtsdk.context import RequestContext, get_admin_context
from virtsdk.db.api import Database
from virtsdk.db.records import Service
from virtsdk.objects import Flavor, Migration

SERVICE_COLUMNS = ("Binary", "Host", "Status", "State", "Updated At", "Disabled Reason",
                   "Version")


def console() -> Console:
    out = Console()
    if not out.is_terminal:
        out.width = 160
    return out


def conf_of(args: argparse.Namespace) -> cfg.ConfigOpts:
    """The configuration the command line named (``args.conf``, set by the entry
    point), else oslo.config's default files (``/etc/virtsdk/virtsdk.conf`` ...)."""
    conf = getattr(args, "conf", None)
    if conf is None:
        from virtsdk.service.config import load_conf

        conf = args.conf = load_conf([], "virtsdk")
    return conf


@contextmanager
def cloud_api(args: argparse.Namespace, messaging: bool = True,
              ) -> Iterator[tuple[API, RequestContext, Database]]:
    """The API of the deployed cloud the configuration points at (its broker and
    database); connections are closed afterwards.  A command that sends RPC
    (``messaging``) first checks the broker answers within ``[DEFAULT]
    rpc_connect_timeout`` (``BrokerUnreachable`` otherwise); one that only reads
    or writes records (``messaging=False``) works with the broker down."""
    conf = conf_of(args)
    db = Database.from_conf(conf)
    try:
        if messaging:
            rpc.check_broker(conf)
        yield API(conf, db), get_admin_context(), db
    finally:
        rpc.cleanup()
        db.dispose()


def service_state(svc: Service, down_time_s: float, now: dt.datetime) -> str:
    return "up" if svc.is_up(down_time_s, now) else "down"


def services_table(services: list[Service], down_time_s: float) -> Table:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table = Table(title="services")
    for col in SERVICE_COLUMNS:
        table.add_column(col, no_wrap=True)
    for svc in services:
        table.add_row(svc.binary, svc.host, "disabled" if svc.disabled else "enabled",
                      service_state(svc, down_time_s, now),
                      svc.updated_at.isoformat(timespec="seconds"),
                      svc.disabled_reason or "-", svc.version or "-")
    return table


MIGRATION_COLUMNS = ("Id", "Instance", "Type", "Source", "Dest", "Status", "Progress",
                     "Memory (processed/total)", "Disk (processed/total)", "Error")


def _mib(done: int, total: int) -> str:
    return f"{done // 2**20}/{total // 2**20} MiB" if total else "-"


def migrations_table(migrations: list[Migration], title: str = "migrations") -> Table:
    table = Table(title=title)
    for col in MIGRATION_COLUMNS:
        table.add_column(col, no_wrap=True)
    for m in migrations:
        table.add_row(str(m.id), m.instance_uuid, str(m.migration_type), m.source_host,
                      m.dest_host or "-", str(m.status), f"{m.progress}%",
                      _mib(m.memory_processed, m.memory_total),
                      _mib(m.disk_processed, m.disk_total), (m.error or "-")[:60])
    return table


def migration_detail(migration: Migration, details: dict[str, object]) -> Table:
    table = Table(title=f"migration {migration.id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for f in dataclasses.fields(migration):
        value = getattr(migration, f.name)
        if isinstance(value, Flavor):
            value = value.name
        table.add_row(f.name, str(value))
    for key, value in sorted(details.items()):
        table.add_row(f"details.{key}", str(value))
    return table
