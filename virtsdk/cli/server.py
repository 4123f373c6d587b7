"""``virtsdk server ...``, ``virtsdk flavor ...`` and ``virtsdk migration ...``: the
operator CLI of a deployed cloud.

Every command builds the same :class:`~virtsdk.api.API` an embedding application uses,
from ``virtsdk --config-file`` (the cloud's broker and database; oslo.config's default
files when none is given), so it validates and fails exactly as the Python API does.
Long operations return once accepted; ``--wait`` follows the instance (and its
migration record, as a progress bar) until its task is over, and exits non-zero when
it ended in error or the migration did not complete.  Errors are one line, no
traceback (exit 1).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from virtsdk.api import API
from virtsdk.cli import common, manage
from virtsdk.context import RequestContext
from virtsdk.exceptions import Invalid, MigrationNotFound, MigrationTimeout
from virtsdk.objects import Instance, Migration
from virtsdk.states import MigrationStatus, MigrationType, VMState

#: migration statuses that mean "it did not happen"
_FAILED = (MigrationStatus.ERROR, MigrationStatus.FAILED, MigrationStatus.CANCELLED)
_LIVE_OPEN = (MigrationStatus.ACCEPTED, MigrationStatus.QUEUED, MigrationStatus.PREPARING,
              MigrationStatus.RUNNING, MigrationStatus.POSTCOPY)


def _wait_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true",
                   help="follow the operation to its end (progress bar); exit 1 if it "
                        "failed")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds --wait waits (default 600)")


def register_server(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("server", help="instances of a deployed cloud: create, migrate ...")
    ssub = p.add_subparsers(dest="server_command", metavar="ACTION")
    ssub.required = True

    c = ssub.add_parser("create", help="boot an instance")
    c.add_argument("name")
    c.add_argument("--flavor", required=True)
    c.add_argument("--host", help="boot on this host (checked) instead of the scheduler's")
    c.add_argument("--image", default="cirros", help="image id (default cirros)")
    c.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="instance metadata")
    c.add_argument("--image-property", action="append", default=[], metavar="KEY=VALUE",
                   help="image property (e.g. kernel=PATH, initrd=PATH, cmdline=ARGS)")
    _wait_opts(c)
    c.set_defaults(func=cmd_create)

    ls = ssub.add_parser("list", help="instances")
    ls.add_argument("--host")
    ls.set_defaults(func=cmd_list)

    show = ssub.add_parser("show", help="one instance with its actions")
    show.add_argument("instance")
    show.set_defaults(func=cmd_show)

    r = ssub.add_parser("resize", help="resize to another flavor (then confirm or revert)")
    r.add_argument("instance")
    r.add_argument("flavor")
    _wait_opts(r)
    r.set_defaults(func=cmd_resize)

    for name, helptext, func in (("confirm", "confirm a resize or cold migration",
                                  cmd_confirm),
                                 ("revert", "revert a resize or cold migration", cmd_revert),
                                 ("delete", "delete an instance and its disks", cmd_delete)):
        x = ssub.add_parser(name, help=helptext)
        x.add_argument("instance")
        _wait_opts(x)
        x.set_defaults(func=func)

    m = ssub.add_parser("migrate", help="cold-migrate (same flavor); then confirm or revert")
    m.add_argument("instance")
    m.add_argument("--host", help="destination (default: the scheduler's choice)")
    _wait_opts(m)
    m.set_defaults(func=cmd_migrate)

    lm = ssub.add_parser("live-migrate", help="live-migrate a running instance")
    lm.add_argument("instance")
    lm.add_argument("--host", help="destination (default: the scheduler's choice)")
    lm.add_argument("--block-migration", choices=("auto", "true", "false"), default="auto")
    _wait_opts(lm)
    lm.set_defaults(func=cmd_live_migrate)

    for name, helptext, func in (("abort", "cancel the running live migration", cmd_abort),
                                 ("force-complete", "make the running live migration "
                                  "finish now", cmd_force_complete)):
        x = ssub.add_parser(name, help=helptext)
        x.add_argument("instance")
        x.add_argument("migration", type=int, nargs="?",
                       help="migration id (default: the instance's live migration in "
                            "progress)")
        x.set_defaults(func=func)

    f = sub.add_parser("flavor", help="flavors of a deployed cloud: create, list")
    fsub = f.add_subparsers(dest="flavor_command", metavar="ACTION")
    fsub.required = True
    fc = fsub.add_parser("create", help="add a flavor")
    fc.add_argument("name")
    fc.add_argument("--ram", type=int, required=True, help="MiB")
    fc.add_argument("--vcpus", type=int, required=True)
    fc.add_argument("--disk", type=int, required=True, help="root disk, GiB")
    fc.add_argument("--ephemeral", type=int, default=0, help="GiB")
    fc.add_argument("--swap", type=int, default=0, help="MiB")
    fc.set_defaults(func=cmd_flavor_create)
    fl = fsub.add_parser("list", help="flavors")
    fl.set_defaults(func=cmd_flavor_list)


def register_migration(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    manage.add_migration_commands(sub)


# -- printing ---------------------------------------------------------------------------


def _instance_table(instances: list[Instance]) -> Table:
    table = Table(title="instances")
    for col in ("UUID", "Name", "Host", "Flavor", "VM state", "Task state", "Power"):
        table.add_column(col, no_wrap=True)
    for i in instances:
        table.add_row(i.uuid, i.name, i.host or "-", i.flavor.name, str(i.vm_state),
                      str(i.task_state or "-"), str(i.power_state))
    return table


def _latest_migration(api: API, ctx: RequestContext, uuid: str,
                      since: int = 0) -> Migration | None:
    migrations = [m for m in api.list_migrations(ctx, uuid) if (m.id or 0) > since]
    return migrations[-1] if migrations else None


def _last_id(api: API, ctx: RequestContext, uuid: str) -> int:
    latest = _latest_migration(api, ctx, uuid)
    return int(latest.id or 0) if latest else 0


def _follow(api: API, ctx: RequestContext, uuid: str, timeout: float,
            since: int | None = None, label: str = "") -> int:
    """Show progress until the instance's task is over; 0 if it ended well.

    ``since``: follow the first migration newer than this id (the one the command
    started); None: follow no migration."""
    out = common.console()
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    migration: Migration | None = None
    with Progress(*columns, console=out, transient=not out.is_terminal) as progress:
        bar = progress.add_task(label or uuid, total=100, status="")
        while True:
            inst = api.show_instance(ctx, uuid) if not _deleted(api, ctx, uuid) else None
            if since is not None:
                migration = _latest_migration(api, ctx, uuid, since) or migration
            if migration is not None:
                progress.update(bar, completed=migration.progress,
                                status=f"{migration.status} {migration.source_host} -> "
                                       f"{migration.dest_host or '?'}")
            elif inst is not None:
                progress.update(bar, status=f"{inst.vm_state}/{inst.task_state or '-'}")
            if inst is None or (inst.task_state is None and inst.vm_state != VMState.BUILDING):
                break
            if time.monotonic() > deadline:
                raise MigrationTimeout(f"instance {uuid} still {inst.vm_state}/"
                                       f"{inst.task_state} after {timeout:.0f} s")
            time.sleep(0.2)
        if migration is not None and migration.status not in _FAILED:
            progress.update(bar, completed=100)
    try:
        inst = api.wait(ctx, uuid, timeout=max(1.0, deadline - time.monotonic()))
    except MigrationTimeout:
        raise
    if since is not None:
        migration = _latest_migration(api, ctx, uuid, since) or migration
    return _verdict(inst, migration)


def _deleted(api: API, ctx: RequestContext, uuid: str) -> bool:
    return api.db.instance_get(uuid, read_deleted=True).vm_state == VMState.DELETED


def _verdict(inst: Instance, migration: Migration | None) -> int:
    out = common.console()
    line = f"instance {inst.uuid}: {inst.vm_state} on {inst.host or '-'}"
    if migration is not None:
        line += f"; migration {migration.id} {migration.status}"
        if migration.error:
            line += f": {migration.error}"
    failed = inst.vm_state == VMState.ERROR or (
        migration is not None and migration.status in _FAILED)
    out.print(("[red]failed[/red]: " if failed else "") + line, highlight=False)
    return 1 if failed else 0


# -- commands ---------------------------------------------------------------------------


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Invalid(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def cmd_create(args: argparse.Namespace) -> int:
    from virtsdk.objects import ImageMeta

    metadata = _pairs(args.property, "--property")
    image = ImageMeta(id=args.image, name=args.image,
                      properties=_pairs(args.image_property, "--image-property"))
    with common.cloud_api(args) as (api, ctx, _db):
        inst = api.create_instance(ctx, args.name, args.flavor, image=image,
                                   metadata=metadata, host=args.host)
        print(inst.uuid)
        if args.wait:
            return _follow(api, ctx, inst.uuid, args.timeout, label=f"create {args.name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, _db):
        common.console().print(_instance_table(api.list_instances(ctx, args.host)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, _db):
        inst = api.show_instance(ctx, args.instance)
        out = common.console()
        out.print(_instance_table([inst]))
        actions = Table(title="actions")
        for col in ("Action", "Request", "Start", "Finish", "Message", "Events"):
            actions.add_column(col)
        for a in api.list_actions(ctx, args.instance):
            actions.add_row(a.action, a.request_id, a.start_time.isoformat(timespec="seconds"),
                            a.finish_time.isoformat(timespec="seconds") if a.finish_time
                            else "-", a.message or "-",
                            ", ".join(f"{e.event}@{e.host}:{e.result}" for e in a.events))
        out.print(actions)
    return 0


def _migration_command(args: argparse.Namespace, label: str,
                       start: Callable[[API, RequestContext], object]) -> int:
    with common.cloud_api(args) as (api, ctx, _db):
        since = _last_id(api, ctx, args.instance)
        start(api, ctx)
        migration = _latest_migration(api, ctx, args.instance, since)
        print(f"{label} of {args.instance} accepted"
              + (f" (migration {migration.id})" if migration else ""))
        if args.wait:
            return _follow(api, ctx, args.instance, args.timeout, since=since,
                           label=f"{label} {args.instance[:8]}")
    return 0


def cmd_resize(args: argparse.Namespace) -> int:
    return _migration_command(args, "resize", lambda api, ctx: api.resize(
        ctx, args.instance, args.flavor))


def cmd_migrate(args: argparse.Namespace) -> int:
    return _migration_command(args, "migration", lambda api, ctx: api.migrate(
        ctx, args.instance, args.host))


def cmd_live_migrate(args: argparse.Namespace) -> int:
    choices: dict[str, bool | str] = {"auto": "auto", "true": True, "false": False}
    block = choices[args.block_migration]
    return _migration_command(args, "live migration", lambda api, ctx: api.live_migrate(
        ctx, args.instance, args.host, block))


def _simple(args: argparse.Namespace, label: str, action: str) -> int:
    with common.cloud_api(args) as (api, ctx, _db):
        getattr(api, action)(ctx, args.instance)
        print(f"{label} of {args.instance} accepted")
        if args.wait:
            return _follow(api, ctx, args.instance, args.timeout, label=label)
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    return _simple(args, "confirm", "confirm_resize")


def cmd_revert(args: argparse.Namespace) -> int:
    return _simple(args, "revert", "revert_resize")


def cmd_delete(args: argparse.Namespace) -> int:
    return _simple(args, "delete", "delete_instance")


def _live_migration_id(api: API, ctx: RequestContext, args: argparse.Namespace) -> int:
    if args.migration is not None:
        return int(args.migration)
    live = api.list_migrations(ctx, args.instance, migration_type=MigrationType.LIVE)
    open_ = [m for m in live if m.status in _LIVE_OPEN]
    if not open_:
        raise MigrationNotFound(f"instance {args.instance} has no live migration in "
                                "progress")
    return int(open_[-1].id or 0)


def cmd_abort(args: argparse.Namespace) -> int:
    return _live_action(args, "abort", "live_migration_abort")


def cmd_force_complete(args: argparse.Namespace) -> int:
    return _live_action(args, "force-complete", "live_migration_force_complete")


def _live_action(args: argparse.Namespace, label: str, method: str) -> int:
    with common.cloud_api(args) as (api, ctx, _db):
        mid = _live_migration_id(api, ctx, args)
        getattr(api, method)(ctx, args.instance, mid)
        print(f"{label} of migration {mid} requested")
    return 0


def cmd_flavor_create(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, _db):
        f = api.flavor_create(ctx, args.name, args.ram, args.vcpus, args.disk,
                              args.ephemeral, args.swap)
    print(f"flavor {f.name} created")
    return 0


def cmd_flavor_list(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, _db):
        table = Table(title="flavors")
        for col in ("Name", "RAM (MiB)", "vCPUs", "Disk (GiB)", "Ephemeral", "Swap"):
            table.add_column(col)
        for f in api.flavor_list(ctx):
            table.add_row(f.name, str(f.memory_mb), str(f.vcpus), str(f.root_gb),
                          str(f.ephemeral_gb), str(f.swap_mb))
        common.console().print(table)
    return 0
