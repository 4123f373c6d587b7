"""``virtsdk drivers list`` and ``virtsdk drivers show NAME``."""

from __future__ import annotations

import argparse

from oslo_config import cfg
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from virtsdk.driver import ComputeDriver
from virtsdk.plugins import COMPUTE_DRIVERS, describe_all, load


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drivers", help="list and describe installed compute drivers")
    dsub = p.add_subparsers(dest="drivers_command", metavar="ACTION")
    dsub.required = True
    p_list = dsub.add_parser("list", help="table of installed drivers")
    p_list.set_defaults(func=cmd_list)
    p_show = dsub.add_parser("show", help="capabilities and options of one driver")
    p_show.add_argument("name")
    p_show.set_defaults(func=cmd_show)


def cmd_list(_args: argparse.Namespace) -> int:
    console = Console()
    table = Table(title="virtsdk compute drivers (entry-point group virtsdk.compute_drivers)")
    for col in ("name", "distribution", "version", "status", "capabilities"):
        table.add_column(col)
    for entry in describe_all(COMPUTE_DRIVERS, ComputeDriver):
        capabilities = entry.plugin.capabilities.as_dict() if entry.plugin else {}
        caps = ", ".join(
            k.removeprefix("supports_") for k, v in capabilities.items() if v is True
        )
        status = (
            "available" if entry.available
            else f"[red]unavailable[/red]: {escape(entry.error)}"
        )
        table.add_row(entry.name, entry.distribution, entry.version, status, caps)
    console.print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    cls = load(COMPUTE_DRIVERS, args.name, ComputeDriver)
    desc = cls.describe()
    console = Console()
    console.print(f"[bold]{desc.name}[/bold]: {desc.summary}")
    caps = Table(title="capabilities")
    caps.add_column("capability")
    caps.add_column("value")
    for key, value in desc.capabilities.items():
        caps.add_row(key, str(value))
    console.print(caps)
    console.print("implements: " + (", ".join(desc.implemented) or "lifecycle only"))
    opts = Table(title=escape(f"options (group [{cls.option_group()}])"))
    for col in ("option", "type", "default", "help"):
        opts.add_column(col)
    for opt in cls.list_opts():
        kind = type(opt).__name__.removesuffix("Opt") if isinstance(opt, cfg.Opt) else "?"
        opts.add_row(opt.name, kind, repr(opt.default), opt.help or "")
    console.print(opts)
    return 0
