"""``virtsdk host drain HOST`` and ``virtsdk host enable HOST``: maintenance of a host.

``drain`` disables the host for scheduling and moves every guest off it following a
plan (``--dry-run`` prints the plan with estimated times and changes nothing).  The
drain runs in the process that started it: this command stays until the drain has
ended (``--wait`` shows progress bars, overall and per guest, while it does) and then
prints the final table (guest, destination, time, downtime, result).  If the command
is interrupted the drain stays recorded as running; the same command again picks it
up.  ``--abort`` stops a running drain: no new migration starts, those in flight are
aborted, every guest keeps running where it ends up.  ``enable`` lets the scheduler
use the host again.

Which cloud: the one the ``--config-file`` options describe (its ``[database]
connection`` and ``transport_url``; the compute services and the conductor run in
their own processes on that broker).  An embedded cloud (``inproc://``) lives inside
one process and is drained through its Python API instead
(``EmbeddedCloud.api.drain_host``); :func:`run_drain` is what this command runs, for
any :class:`~virtsdk.api.API`.
"""

from __future__ import annotations

import argparse
import time

from oslo_config import cfg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from virtsdk import conf as conf_pkg
from virtsdk import rpc
from virtsdk.api import API
from virtsdk.context import RequestContext, get_admin_context
from virtsdk.db.api import Database
from virtsdk.db.records import Drain
from virtsdk.drain.plan import Plan
from virtsdk.exceptions import Invalid, VirtSDKError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("host", help="maintenance of a compute host (drain, enable)")
    hsub = p.add_subparsers(dest="host_command", metavar="ACTION")
    hsub.required = True
    d = hsub.add_parser("drain", help="move every guest off HOST (live) and disable it")
    d.add_argument("host", metavar="HOST")
    d.add_argument("--wait", action="store_true",
                   help="show progress bars (overall and per guest) until it ends")
    d.add_argument("--dry-run", action="store_true",
                   help="print the plan with estimated times; change nothing")
    d.add_argument("--allow-cold", action="store_true",
                   help="cold-migrate guests that cannot move live (never by default)")
    d.add_argument("--abort", action="store_true",
                   help="stop the running drain of HOST and abort its migrations")
    d.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds to wait for the drain to end (default 3600)")
    d.set_defaults(func=_drain_main)
    e = hsub.add_parser("enable", help="let the scheduler use HOST again")
    e.add_argument("host", metavar="HOST")
    e.set_defaults(func=_enable_main)


def connect(config_files: list[str]) -> tuple[API, RequestContext]:
    """The API of the cloud the configuration files describe."""
    conf = cfg.ConfigOpts()
    conf_pkg.register_all(conf)
    rpc.register_opts(conf)
    args: list[str] = []
    for path in config_files:
        args += ["--config-file", path]
    conf(args, project="virtsdk", default_config_files=[] if config_files else None)
    if str(conf.transport_url or "").startswith("inproc:"):
        raise Invalid("the configured transport_url is inproc:// (an embedded cloud "
                      "inside one process): give --config-file naming the cloud's "
                      "broker and database, or use EmbeddedCloud.api.drain_host")
    return API(conf, Database.from_conf(conf)), get_admin_context()


def _drain_main(args: argparse.Namespace) -> int:
    api, ctx = connect(list(args.config_file))
    return run_drain(api, ctx, args.host, wait=args.wait, dry_run=args.dry_run,
                     allow_cold=args.allow_cold, abort=args.abort, timeout=args.timeout)


def _enable_main(args: argparse.Namespace) -> int:
    api, ctx = connect(list(args.config_file))
    svc = api.enable_host(ctx, args.host)
    Console().print(f"host {svc.host} is enabled for scheduling")
    return 0


def plan_table(host: str, plan: Plan) -> Table:
    table = Table(title=f"Drain plan of {host}: {len(plan.moves)} to move, "
                        f"{plan.concurrency} at once, about {plan.total_s:.1f} s "
                        "(estimated)")
    for col in ("guest", "destination", "mode", "starts at (s)", "takes (s)", "note"):
        table.add_column(col)
    for m in plan.moves:
        table.add_row(m.name, m.dest, str(m.mode), f"{m.start_s:.1f}",
                      f"{m.duration_s:.1f}",
                      "" if m.converges else "pre-copy may not converge")
    for s in plan.stuck:
        table.add_row(s.name, "-", "-", "-", "-", f"stays: {s.why}")
    return table


def result_table(drain: Drain) -> Table:
    table = Table(title=f"Drain {drain.id} of {drain.host}: {drain.status}"
                        + (f" ({drain.message})" if drain.message else ""))
    for col in ("guest", "destination", "time (s)", "downtime (ms)", "result"):
        table.add_column(col)
    for g in drain.guests:
        secs = g.seconds
        result = g.status if not g.error else f"{g.status}: {g.error}"
        table.add_row(g.name, g.dest_host if g.status == "done" else "-",
                      "-" if secs is None else f"{secs:.2f}",
                      "-" if g.downtime_ms is None else str(g.downtime_ms), result)
    return table


def run_drain(api: API, ctx: RequestContext, host: str, *, wait: bool = False,
              dry_run: bool = False, allow_cold: bool = False, abort: bool = False,
              timeout: float = 3600.0, console: Console | None = None) -> int:
    """What ``virtsdk host drain`` does; 0 when the drain ended complete (or the plan
    was printed), 1 when it ended incomplete."""
    console = console or Console()
    if dry_run:
        console.print(plan_table(host, api.drain_plan(ctx, host, allow_cold=allow_cold)))
        return 0
    if abort:
        drain = api.drain_abort(ctx, host)
        console.print(f"drain {drain.id} of {host}: aborting")
    else:
        active = [d for d in api.drain_list(ctx, host) if not d.finished]
        if active:
            drain = active[-1]
            api.drain_resume(ctx)
            console.print(f"drain {drain.id} of {host} is running: following it")
        else:
            console.print(plan_table(host, api.drain_plan(ctx, host,
                                                          allow_cold=allow_cold)))
            drain = api.drain_host(ctx, host, allow_cold=allow_cold)
    if wait:
        drain = _follow(api, ctx, drain.id, timeout, console)
    else:
        drain = api.drain_wait(ctx, drain.id, timeout=timeout)
    console.print(result_table(drain))
    return 0 if drain.status == "complete" else 1


def _follow(api: API, ctx: RequestContext, drain_id: int, timeout: float,
            console: Console) -> Drain:
    """Progress bars from the records until the drain ends."""
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        drain = api.drain_get(ctx, drain_id)
        overall = progress.add_task(f"drain {drain.host}", total=max(1, len(drain.guests)))
        bars: dict[str, TaskID] = {}
        while True:
            drain = api.drain_get(ctx, drain_id)
            settled = 0
            for g in drain.guests:
                if g.instance_uuid not in bars:
                    bars[g.instance_uuid] = progress.add_task(g.name, total=100)
                pct = 0
                if g.status in ("done",):
                    pct = 100
                elif g.status == "migrating" and g.migration_id is not None:
                    try:
                        pct = api.get_migration(ctx, g.instance_uuid,
                                                g.migration_id).progress
                    except VirtSDKError:  # deleted meanwhile: the record says
                        pct = 0
                settled += g.status not in ("pending", "migrating")
                where = f" -> {g.dest_host}" if g.dest_host else ""
                progress.update(bars[g.instance_uuid], completed=pct,
                                description=f"{g.name}{where} [{g.status}]")
            progress.update(overall, completed=settled,
                            description=f"drain {drain.host} [{drain.status}]")
            if drain.finished or time.monotonic() > deadline:
                return drain
            time.sleep(0.1)
