"""``virtsdk`` entry point: sub-commands are plugins.

Each sub-command registers itself through the entry-point group
``virtsdk.cli_commands``: the target is a callable ``register(subparsers)`` that adds
a parser and sets ``func`` (taking the parsed namespace, returning an exit code).
The core's own commands (``drivers``, ``demo``) are registered the same way as a
contrib's (``lab``), so the core never imports contrib code.
"""

from __future__ import annotations

import argparse
import sys

from virtsdk import plugins
from virtsdk.exceptions import PluginError
from virtsdk.service.errors import error_text, is_operator_error


def build_parser(prog: str = "virtsdk", group: str = plugins.CLI_COMMANDS,
                 description: str = "Hypervisor-driver SDK: drivers, demo and tools.",
                 ) -> argparse.ArgumentParser:
    """The parser of a command whose sub-commands are the plugins of entry-point
    ``group`` (``virtsdk``; ``virtsdk-manage`` uses it with its own group).  A plugin
    that fails to load is reported on stderr and left out."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config-file", action="append", default=[],
                        help="oslo.config file(s) to read (the cloud's broker, database, "
                             "driver options...)")
    parser.add_argument("--config-dir", action="append", default=[],
                        help="directories of *.conf files to read")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in plugins.names(group):
        try:
            register = plugins.load_function(group, name)
        except PluginError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.conf = None
        files, dirs = getattr(args, "config_file", []), getattr(args, "config_dir", [])
        if files or dirs:
            from virtsdk.service.config import conf_from_files

            args.conf = conf_from_files(files, dirs)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI shows errors, not tracebacks
        if not is_operator_error(exc):
            raise
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
