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
import warnings

from virtsdk import plugins
from virtsdk.exceptions import PluginError, VirtSDKError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtsdk", description="Hypervisor-driver SDK: drivers, demo and tools."
    )
    parser.add_argument("--config-file", action="append", default=[],
                        help="oslo.config file(s) to read")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in plugins.names(plugins.CLI_COMMANDS):
        try:
            register = plugins.load_function(plugins.CLI_COMMANDS, name)
        except PluginError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            continue
        register(sub)
    return parser


def quiet_library_warnings() -> None:
    """oslo.messaging imports eventlet and deprecated oslo modules; their import-time
    deprecation notices are for library maintainers, not for a CLI user."""
    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def main(argv: list[str] | None = None) -> int:
    quiet_library_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except VirtSDKError as exc:  # a CLI shows errors, not tracebacks
        # a remote error's traceback is in the serving service's log under this id
        where = f" (request {exc.request_id})" if exc.request_id else ""
        print(f"error: {exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
