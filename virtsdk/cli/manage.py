"""``virtsdk-manage``: operator commands that work on the database directly.

``virtsdk-manage [--config-file F] [--config-dir D] CATEGORY ACTION [args]``, options
read through oslo.config like every virtsdk service (default files
``/etc/virtsdk/virtsdk.conf`` and ``~/.virtsdk/virtsdk.conf``).

Categories are entries of :data:`CATEGORIES`: a help line and a ``register(subparsers)``
that adds one parser per action, each with ``set_defaults(func=...)`` where ``func``
takes the parsed :class:`~oslo_config.cfg.ConfigOpts` (the action's arguments are
``conf.category.<dest>``) and returns the exit code.  Errors print one line on stderr
and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

Action = Callable[[cfg.ConfigOpts], int]


def _db_sync(conf: cfg.ConfigOpts) -> int:
    from virtsdk.db import api, migration

    revision = migration.db_sync(api.connection_url(conf), conf.category.revision)
    print(f"database schema at {revision}")
    return 0


def _db_version(conf: cfg.ConfigOpts) -> int:
    from virtsdk.db import api, migration

    print(migration.db_version(api.connection_url(conf)) or "None (never synced)")
    return 0


def _register_db(sub: Any) -> None:
    sync = sub.add_parser("sync", help="create or upgrade the schema (idempotent; safe "
                                       "to run from several processes at once)")
    sync.add_argument("revision", nargs="?", default="head",
                      help="the revision to upgrade to (default: the newest)")
    sync.set_defaults(func=_db_sync)
    version = sub.add_parser("version", help="print the schema revision of the database")
    version.set_defaults(func=_db_version)


#: category name -> (help, register(subparsers))
CATEGORIES: dict[str, tuple[str, Callable[[Any], None]]] = {
    "db": ("database schema", _register_db),
}


def _add_parsers(subparsers: Any) -> None:
    for name, (help_text, register) in CATEGORIES.items():
        parser = subparsers.add_parser(name, help=help_text)
        actions = parser.add_subparsers(dest="action", metavar="ACTION")
        actions.required = True
        register(actions)


def build_conf() -> cfg.ConfigOpts:
    """A ConfigOpts with every virtsdk option and the ``category`` sub-command."""
    from virtsdk import conf as conf_pkg

    conf = cfg.ConfigOpts()
    conf_pkg.register_all(conf)
    conf.register_cli_opt(cfg.SubCommandOpt("category", title="categories",
                                            handler=_add_parsers))
    return conf


def main(argv: list[str] | None = None) -> int:
    from virtsdk.cli.main import quiet_library_warnings
    from virtsdk.exceptions import VirtSDKError

    quiet_library_warnings()
    conf = build_conf()
    try:
        conf(sys.argv[1:] if argv is None else argv, project="virtsdk",
             prog="virtsdk-manage")
    except cfg.Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    func: Action = conf.category.func
    try:
        return int(func(conf) or 0)
    except KeyboardInterrupt:
        return 130
    except (VirtSDKError, argparse.ArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - database errors: one line, no traceback
        import sqlalchemy.exc

        if not isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            raise
        print(f"error: database: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover - python -m virtsdk.cli.manage
    sys.exit(main())
