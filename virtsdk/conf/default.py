"""Options in the ``[DEFAULT]`` group that every service reads."""

from __future__ import annotations

import socket

from oslo_config import cfg

opts: list[cfg.Opt] = [
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this compute host, as the scheduler and RPC know it."),
    cfg.StrOpt("compute_driver", default="fake",
               help="Entry-point name (group virtsdk.compute_drivers) of the driver "
                    "this host runs.  `virtsdk drivers list` shows what is installed."),
    cfg.StrOpt("state_path", default="/var/lib/virtsdk",
               help="Top directory for virtsdk's state on this host."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(None, opts)]
