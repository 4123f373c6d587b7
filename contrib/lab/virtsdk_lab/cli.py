"""``virtsdk lab up|down|status``: run a lab from the shell.

A lab started here is *persistent*: it keeps running after the command exits, until
``virtsdk lab down``.  Registered through the ``virtsdk.cli_commands`` entry point.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from virtsdk_lab import allocation, state, teardown
from virtsdk_lab.errors import LabError, PrerequisitesMissing
from virtsdk_lab.lab import DEFAULT_ROOT, Lab, clean_index, host_status, recorded_labs
from virtsdk_lab.prereqs import check_prerequisites


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = 140
    return console


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lab`` and its sub-commands to the ``virtsdk`` parser (called by the CLI)."""
    parser = sub.add_parser("lab", help="multi-host libvirt lab on this machine")
    lab_sub = parser.add_subparsers(dest="lab_command", metavar="ACTION")
    lab_sub.required = True

    up = lab_sub.add_parser("up", help="start a lab that runs until 'lab down'")
    up.add_argument("--name", default="vsdk", help="lab name (host names <name>-a, ...)")
    up.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    up.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="state directory")
    up.add_argument("--services", action="store_true",
                    help="also deploy virtsdk on it: a virtsdk-compute inside each host, "
                         "virtsdk-conductor, and a private RabbitMQ and PostgreSQL on the "
                         "lab bridge; prints the --config-file for 'virtsdk server ...'")
    up.set_defaults(func=cmd_up)

    down = lab_sub.add_parser("down", help="stop a lab and remove everything it created")
    which = down.add_mutually_exclusive_group()
    which.add_argument("--name", help="the persistent lab(s) with this name (default: vsdk)")
    which.add_argument("--index", type=int, help="the lab with this index")
    which.add_argument("--all", action="store_true",
                       help="every lab not in use by a live process, and stale leftovers")
    down.set_defaults(func=cmd_down)

    status = lab_sub.add_parser("status", help="show the labs on this machine")
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    console = _console()
    missing = check_prerequisites(with_guest=False)
    if missing:
        console.print(str(PrerequisitesMissing(missing)))
        return 1
    started = time.monotonic()
    lab = Lab(args.name, args.hosts, args.root, persistent=True).up()
    console.print(f"lab {lab.names.slug} up in {time.monotonic() - started:.2f} s")
    _print_hosts(console, lab.index or 0, lab.hosts)
    if args.services:
        from virtsdk_lab.deployment import LabDeployment

        try:
            deployment = LabDeployment(lab.hosts, lab.names.gateway,
                                       lab.lab_dir / "services").start()
        except BaseException:
            lab.down()
            raise
        console.print(f"services up (logs in {deployment.dir}); try:\n"
                      f"  virtsdk --config-file {deployment.conf} server list\n"
                      f"  virtsdk-manage --config-file {deployment.conf} service list")
    lab.detach()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    console = _console()
    if args.all:
        targets = sorted(set(state.recorded_indexes(allocation.RUN_DIR))
                         | set(teardown.indexes_with_resources()))
    elif args.index is not None:
        targets = [args.index]
    else:
        name = args.name or "vsdk"
        targets = [rec.index for rec, _busy in recorded_labs()
                   if rec.name == name and rec.persistent]
    if not targets:
        console.print("no lab to take down")
        return 0
    failures = 0
    for index in targets:
        lock = allocation.try_lock(index)
        if lock is None:
            console.print(f"lab {index}: in use by a running process, left alone")
            failures += 1
            continue
        try:
            started = time.monotonic()
            cleaned = clean_index(index)
            if cleaned:
                console.print(f"lab {index}: down in {time.monotonic() - started:.2f} s")
            else:
                console.print(f"lab {index}: nothing to remove")
        except LabError as exc:
            console.print(f"lab {index}: {exc}")
            failures += 1
        finally:
            lock.release()
    return 1 if failures else 0


def cmd_status(args: argparse.Namespace) -> int:
    console = _console()
    missing = check_prerequisites()
    if missing:
        console.print(str(PrerequisitesMissing(missing)))
    labs = recorded_labs()
    stray = sorted(set(teardown.indexes_with_resources()) - {rec.index for rec, _ in labs})
    if not labs and not stray:
        console.print("no lab is running")
    for record, busy in labs:
        owner = f"in use by pid {record.owner_pid}" if busy else (
            "persistent" if record.persistent else "stale (owner gone)")
        console.print(f"lab {record.name}-{record.index} ({owner}), {record.lab_dir}")
        _print_hosts(console, record.index, record.hosts)
    for index in stray:
        console.print(f"lab {index}: leftover namespaces/interfaces without a record "
                      "('virtsdk lab down --all' removes them)")
    return 1 if missing else 0


def _print_hosts(console: Console, index: int, hosts: list) -> None:
    table = Table(title=f"lab {index} hosts")
    for column in ("host", "address", "netns", "libvirt URI", "libvirtd", "virtlogd",
                   "listening", "processes"):
        table.add_column(column, no_wrap=True)
    for host in hosts:
        st = host_status(host)
        table.add_row(st.name, st.address, st.netns, st.libvirt_uri,
                      str(st.libvirtd_pid or "-"), str(st.virtlogd_pid or "-"),
                      "yes" if st.listening else "no", str(st.processes))
    console.print(table)
