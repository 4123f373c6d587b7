"""``virtsdk audit``: compare every host's hypervisor with the database.

Reads the deployment's configuration (``virtsdk --config-file FILE audit``: the
``transport_url`` of its broker and its ``[database] connection``), asks every
compute service over RPC what its hypervisor holds, and prints one row per
difference: host, instance, what the hypervisor holds, the problem and whether it
is safely orphaned.  Exits 0 when there is none, 1 otherwise.  ``--fix`` first has
each host remove what is safely orphaned (checked again on the host), then prints
what is left.
"""

from __future__ import annotations

import argparse

from oslo_config import cfg
from rich.console import Console
from rich.table import Table

from virtsdk import conf as conf_pkg
from virtsdk import rpc
from virtsdk.audit import AuditReport, audit_cloud
from virtsdk.context import get_admin_context
from virtsdk.db.api import Database


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="compare every host's hypervisor with the database "
                                     "(exit 1 on any difference)")
    p.add_argument("--fix", action="store_true",
                   help="first remove what is safely orphaned, then report the rest")
    p.set_defaults(func=run)


def load_conf(config_files: list[str]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf_pkg.register_all(conf)
    rpc.register_opts(conf)
    conf([], project="virtsdk", default_config_files=list(config_files))
    return conf


def render(report: AuditReport, console: Console) -> None:
    for diff in report.fixed:
        console.print(f"fixed: {diff.host} {diff.instance_uuid} {diff.held}: "
                      f"{diff.problem}")
    if not report.differences:
        console.print(f"no differences on {len(report.hosts)} host(s): "
                      f"{', '.join(report.hosts) or 'none'}")
        return
    table = Table(title="hypervisor vs database")
    for column in ("host", "instance", "held", "problem", "safely orphaned"):
        table.add_column(column)
    for d in sorted(report.differences, key=lambda d: (d.host, d.instance_uuid, d.held)):
        table.add_row(d.host, d.instance_uuid or "-", d.held or "-", d.problem,
                      "yes" if d.fixable else "no")
    console.print(table)


def run(args: argparse.Namespace) -> int:
    conf = load_conf(getattr(args, "config_file", []) or [])
    db = Database.from_conf(conf)
    try:
        report = audit_cloud(conf, db, get_admin_context(), fix=args.fix)
    finally:
        db.dispose()
    render(report, Console(width=160))
    return 1 if report.differences else 0
