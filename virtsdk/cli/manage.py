"""``virtsdk-manage``: operator tasks on a deployed cloud's records.

Sub-commands are plugins in the entry-point group ``virtsdk.manage_commands`` (each a
``register(subparsers)`` that sets ``func``), like the ``virtsdk`` command's.  The
core registers ``service`` (``list``, ``disable``, ``enable``), ``migration``
(``list``, ``show``) and ``reset-state``.  Every command reads ``--config-file`` /
``--config-dir`` (oslo.config's default search when none is given) and talks to the
database the configuration names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oslo_config import cfg

from virtsdk.cli import common
from virtsdk.exceptions import Invalid
from virtsdk.service.errors import error_text, is_operator_error
from virtsdk.services import COMPUTE as COMPUTE_BINARY
from virtsdk.states import MigrationStatus, MigrationType, VMState

NAMESPACE = "virtsdk.manage_commands"


def build_parser() -> argparse.ArgumentParser:
    from virtsdk.cli.main import build_parser as plugin_parser

    return plugin_parser("virtsdk-manage", NAMESPACE, "Operator tasks on a virtsdk cloud.")


def _load_conf(args: argparse.Namespace) -> cfg.ConfigOpts:
    from virtsdk.service.config import conf_from_files, load_conf

    if args.config_file or args.config_dir:
        return conf_from_files(args.config_file, args.config_dir)
    return load_conf([], "virtsdk-manage")  # oslo.config's default file search


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.conf = _load_conf(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI shows errors, not tracebacks
        if not is_operator_error(exc):
            raise
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 1


# -- db -------------------------------------------------------------------------------


def register_db(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="database schema: sync, version")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    sync = dsub.add_parser("sync", help="create or upgrade the schema (idempotent; safe "
                                        "to run from several processes at once)")
    sync.add_argument("revision", nargs="?", default="head",
                      help="the revision to upgrade to (default: the newest)")
    sync.set_defaults(func=cmd_db_sync)
    version = dsub.add_parser("version", help="print the schema revision of the database")
    version.set_defaults(func=cmd_db_version)


def cmd_db_sync(args: argparse.Namespace) -> int:
    from virtsdk.db import api, migration

    print(f"database schema at {migration.db_sync(api.connection_url(args.conf), args.revision)}")
    return 0


def cmd_db_version(args: argparse.Namespace) -> int:
    from virtsdk.db import api, migration

    print(migration.db_version(api.connection_url(args.conf)) or "None (never synced)")
    return 0


# -- service ----------------------------------------------------------------------------


def register_service(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("service", help="compute and conductor services: up/down, disable")
    ssub = p.add_subparsers(dest="service_command", metavar="ACTION")
    ssub.required = True
    ls = ssub.add_parser("list", help="every service with its state (like nova service-list)")
    ls.add_argument("--binary", help="only this binary (virtsdk-compute, virtsdk-conductor)")
    ls.set_defaults(func=cmd_service_list)
    dis = ssub.add_parser("disable", help="the scheduler stops choosing this compute host")
    dis.add_argument("host")
    dis.add_argument("--reason", default=None, help="shown in 'service list'")
    dis.set_defaults(func=cmd_service_disable)
    en = ssub.add_parser("enable", help="the scheduler may choose this compute host again")
    en.add_argument("host")
    en.set_defaults(func=cmd_service_enable)


def cmd_service_list(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (_api, _ctx, db):
        services = db.service_get_all(args.binary)
        common.console().print(common.services_table(
            services, args.conf.compute.service_down_time))
    return 0


def cmd_service_disable(args: argparse.Namespace) -> int:
    if args.reason is not None and len(args.reason) > 255:
        raise Invalid("--reason: at most 255 characters")
    return _set_disabled(args, True, args.reason)


def cmd_service_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False, None)


def _set_disabled(args: argparse.Namespace, disabled: bool, reason: str | None) -> int:
    with common.cloud_api(args, messaging=False) as (_api, _ctx, db):
        db.service_update(args.host, COMPUTE_BINARY,
                          {"disabled": disabled, "disabled_reason": reason})
    print(f"{COMPUTE_BINARY} on {args.host}: {'disabled' if disabled else 'enabled'}")
    return 0


# -- migration --------------------------------------------------------------------------


def add_migration_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``migration list|show`` (shared by ``virtsdk`` and ``virtsdk-manage``)."""
    p = sub.add_parser("migration", help="migration records: list, show")
    msub = p.add_subparsers(dest="migration_command", metavar="ACTION")
    msub.required = True
    ls = msub.add_parser("list", help="migrations, oldest first")
    ls.add_argument("--instance", help="only this instance's (UUID)")
    ls.add_argument("--host", help="only those from or to this host")
    ls.add_argument("--status", choices=[str(s) for s in MigrationStatus])
    ls.add_argument("--type", dest="migration_type", choices=[str(t) for t in MigrationType])
    ls.set_defaults(func=cmd_migration_list)
    show = msub.add_parser("show", help="one migration with its progress and details")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_migration_show)


def register_migration(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_migration_commands(sub)


def cmd_migration_list(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, _db):
        migrations = api.list_migrations(
            ctx, args.instance, args.host,
            MigrationStatus(args.status) if args.status else None,
            MigrationType(args.migration_type) if args.migration_type else None)
        common.console().print(common.migrations_table(migrations))
    return 0


def cmd_migration_show(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, db):
        migration = db.migration_get(args.id)
        details = api.get_migration_details(ctx, args.id)
        common.console().print(common.migration_detail(migration, details))
    return 0


# -- reset-state ------------------------------------------------------------------------


def register_reset_state(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reset-state",
                       help="clear an instance's task and set its vm_state (after an "
                            "operator checked it)")
    p.add_argument("instance", help="instance UUID")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--active", dest="state", action="store_const",
                       const=str(VMState.ACTIVE), help="vm_state active (default)")
    which.add_argument("--error", dest="state", action="store_const",
                       const=str(VMState.ERROR), help="vm_state error")
    p.set_defaults(func=cmd_reset_state, state=str(VMState.ACTIVE))


def cmd_reset_state(args: argparse.Namespace) -> int:
    with common.cloud_api(args, messaging=False) as (api, ctx, _db):
        inst = api.reset_state(ctx, args.instance, VMState(args.state))
    print(f"instance {inst.uuid}: vm_state {inst.vm_state}, task_state None")
    return 0


if __name__ == "__main__":  # python -m virtsdk.cli.manage
    sys.exit(main())
