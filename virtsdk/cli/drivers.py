"""``virtsdk drivers list|show|new|check|matrix``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from oslo_config import cfg
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from virtsdk.driver import Capabilities, ComputeDriver
from virtsdk.plugins import COMPUTE_DRIVERS, PluginInfo, describe_all, load
from virtsdk.testing.report import LIFECYCLE, ConformanceReport, load_reports


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drivers", help="list, describe, scaffold and check compute drivers")
    dsub = p.add_subparsers(dest="drivers_command", metavar="ACTION")
    dsub.required = True
    p_list = dsub.add_parser("list", help="table of installed drivers")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.set_defaults(func=cmd_list)
    p_show = dsub.add_parser("show", help="capabilities and options of one driver")
    p_show.add_argument("name")
    p_show.set_defaults(func=cmd_show)
    p_new = dsub.add_parser("new", help="write a new driver distribution, ready to install")
    p_new.add_argument("name", help="entry-point name of the new driver")
    p_new.add_argument("--dir", default=None,
                       help="where to write it (default: ./virtsdk-NAME)")
    p_new.set_defaults(func=cmd_new)
    p_check = dsub.add_parser(
        "check", help="run the four migration flows on an embedded cloud and check outcomes")
    p_check.add_argument("name")
    p_check.add_argument("--set", action="append", default=[], metavar="GROUP.OPT=VALUE",
                         help="configuration override for the embedded cloud (repeatable)")
    p_check.set_defaults(func=cmd_check)
    p_matrix = dsub.add_parser("matrix", help="feature support matrix of installed drivers")
    p_matrix.add_argument("--format", choices=("md", "rst", "json"), default="md")
    p_matrix.add_argument("--check", action="append", default=[], metavar="NAME",
                          help="also run `drivers check` on this driver (repeatable) "
                               "so its cells say passes / fails")
    p_matrix.add_argument("--results", type=Path, default=None, metavar="DIR",
                          help="conformance reports (DIR/<driver>.json, written by pytest "
                               "--conformance-report DIR) that make cells say passes / fails")
    p_matrix.set_defaults(func=cmd_matrix)


def _drivers() -> list[PluginInfo]:
    return describe_all(COMPUTE_DRIVERS, ComputeDriver)


def _claimed(entry: PluginInfo) -> list[str]:
    cls: type[ComputeDriver] | None = entry.plugin
    if cls is None:
        return []
    return [k.removeprefix("supports_") for k, v in cls.capabilities.as_dict().items()
            if v is True]


def _summary(entry: PluginInfo) -> str:
    cls: type[ComputeDriver] | None = entry.plugin
    return cls.describe().summary if cls is not None else ""


def cmd_list(args: argparse.Namespace) -> int:
    entries = _drivers()
    if args.json:
        print(json.dumps([{"name": e.name, "distribution": e.distribution,
                           "version": e.version, "target": e.target,
                           "available": e.available, "error": e.error,
                           "summary": _summary(e), "capabilities": _claimed(e)}
                          for e in entries], indent=2))
        return 0
    console = Console()
    table = Table(title="virtsdk compute drivers (entry-point group virtsdk.compute_drivers)")
    # every cell folds (never cut at the terminal's edge); one capability a line
    for col in ("name", "distribution", "version", "status", "capabilities"):
        table.add_column(col, overflow="fold")
    for entry in entries:
        status = (
            "available" if entry.available
            else f"[red]unavailable[/red]: {escape(entry.error)}"
        )
        table.add_row(entry.name, entry.distribution, entry.version, status,
                      "\n".join(_claimed(entry)))
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
        opts.add_column(col, overflow="fold")
    for opt in cls.list_opts():
        kind = type(opt).__name__.removesuffix("Opt") if isinstance(opt, cfg.Opt) else "?"
        opts.add_row(opt.name, kind, repr(opt.default), opt.help or "")
    console.print(opts)
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from virtsdk.cli.scaffold import write_distribution

    target = Path(args.dir or f"virtsdk-{args.name}")
    written = write_distribution(args.name, target)
    console = Console()
    for path in written:
        console.print(f"wrote {escape(str(path))}")
    console.print(f"next: pip install -e {escape(str(target))} && "
                  f"virtsdk drivers list && (cd {escape(str(target))} && python -m pytest)")
    return 0


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["group.opt=value", ...]`` -> ``{"group": {"opt": "value"}}`` (``DEFAULT`` when
    no group is named)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        group, dot, opt = key.rpartition(".")
        if not sep or not opt:
            raise SystemExit(f"--set expects GROUP.OPTION=VALUE, got {pair!r}")
        out.setdefault(group or "DEFAULT", {})[opt] = value
    return out


def cmd_check(args: argparse.Namespace) -> int:
    from virtsdk.cli.flows import check_driver

    load(COMPUTE_DRIVERS, args.name, ComputeDriver)  # a clear error before any cloud starts
    results = check_driver(args.name, parse_overrides(args.set))
    table = Table(title=f"virtsdk drivers check {escape(args.name)}")
    for col in ("flow", "result", "time", "what failed"):
        table.add_column(col, overflow="fold")
    colour = {"passed": "green", "failed": "red", "skipped": "yellow"}
    for r in results:
        table.add_row(r.flow, f"[{colour[r.result]}]{r.result}[/]",
                      f"{r.seconds:.2f} s" if r.result != "skipped" else "",
                      escape("; ".join(r.problems)))
    Console().print(table)
    return 1 if any(r.result == "failed" for r in results) else 0


#: matrix feature -> flows of ``drivers check`` that exercise it
_FLOWS_OF = {"supports_cold_migration": ("cold migration + confirm",),
             "supports_resize": ("resize + confirm", "resize + revert"),
             "supports_live_migration": ("live migration",)}


def _cell(declared: bool, results: list[str | None]) -> str:
    """``fails`` if any recorded result failed, ``passes`` if one passed, else
    ``declared`` / ``-``; results of a feature the driver does not claim are ignored."""
    if not declared:
        return "-"
    if "failed" in results:
        return "fails"
    if "passed" in results:
        return "passes"
    return "declared"


def matrix_rows(checked: dict[str, dict[str, str]] | None = None,
                reports: dict[str, ConformanceReport] | None = None) -> dict[str, Any]:
    """The support matrix: one row per feature flag (grouped) after the lifecycle every
    driver implements, one column per installed driver; a cell is ``declared``, ``-``,
    ``passes`` / ``fails`` (from the flows of ``drivers check`` in ``checked``: driver
    -> flow -> result, and from conformance ``reports``) or ``unavailable``.  The
    ``sources`` say where each driver's passes / fails come from."""
    checked = checked or {}
    reports = reports or {}
    drivers = _drivers()
    features: list[tuple[str, str, str, str | None]] = [
        (LIFECYCLE, LIFECYCLE, "spawn, power, list, destroy, host resources", None)]
    features += [(f.metadata["group"], f.name.removeprefix("supports_"),
                  f.metadata["summary"], f.name) for f in Capabilities.features()]
    rows = []
    for group, name, summary, flag in features:
        cells: dict[str, str] = {}
        for entry in drivers:
            cls: type[ComputeDriver] | None = entry.plugin
            if cls is None:
                cells[entry.name] = "unavailable"
                continue
            declared = flag is None or bool(getattr(cls.capabilities, flag))
            flows = _FLOWS_OF.get(flag or "", ())
            results: list[str | None] = [checked.get(entry.name, {}).get(f) for f in flows]
            if None in results:
                results = []
            report = reports.get(entry.name)
            if report is not None:
                results.append(report.features.get(name))
            cells[entry.name] = _cell(declared, results)
        rows.append({"group": group, "feature": name, "summary": summary, "cells": cells})
    sources = {}
    for entry in drivers:
        said = []
        if entry.name in checked:
            said.append("{code}virtsdk drivers check{code} (this run)")
        report = reports.get(entry.name)
        if report is not None:
            where = report.machine
            said.append(f"conformance of {report.distribution or report.driver} "
                        f"{report.version}, {report.date[:10]}, {where.get('cpus')} CPUs / "
                        f"{round(where.get('memory_mb', 0) / 1024)} GiB: "
                        f"{{code}}{report.command}{{code}}")
        if said:
            sources[entry.name] = "; ".join(said)
    return {"drivers": [e.name for e in drivers], "rows": rows, "sources": sources}


def render_matrix(matrix: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(matrix, indent=2)
    names = matrix["drivers"]
    header = ["group", "feature", *names]
    body = [[r["group"], r["feature"], *(r["cells"][n] for n in names)]
            for r in matrix["rows"]]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines += _sources(matrix, names, "- ", "`")
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
    rule = " ".join("=" * w for w in widths)
    fmt_row = " ".join("{:<%d}" % w for w in widths).format  # noqa: UP031
    out = [rule, fmt_row(*header).rstrip(), rule]
    out += [fmt_row(*row).rstrip() for row in body]
    out.append(rule)
    out += _sources(matrix, names, "* ", "``")
    return "\n".join(out)


def _sources(matrix: dict[str, Any], names: list[str], bullet: str, code: str) -> list[str]:
    """Where each driver's passes / fails come from, one bullet per driver."""
    said = [f"{bullet}{n}: " + matrix["sources"][n].replace("{code}", code) for n in names
            if n in matrix.get("sources", {})]
    return ["", *said] if said else []


def cmd_matrix(args: argparse.Namespace) -> int:
    checked: dict[str, dict[str, str]] = {}
    if args.check:
        from virtsdk.cli.flows import check_driver

        for name in args.check:
            checked[name] = {r.flow: r.result for r in check_driver(name)}
    reports = load_reports(args.results) if args.results is not None else {}
    print(render_matrix(matrix_rows(checked, reports), args.format))
    return 0
