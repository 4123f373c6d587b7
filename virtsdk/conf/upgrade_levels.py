"""Options of the ``[upgrade_levels]`` group: RPC version caps for rolling upgrades."""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.conf.groups import register_group

group = cfg.OptGroup("upgrade_levels", title="RPC version caps during a rolling upgrade")

opts: list[cfg.Opt] = [
    cfg.StrOpt("compute", default=None,
               help="Highest compute RPC API version this service sends, e.g. '1.0' "
                    "while compute services of the previous release still run: "
                    "messages and the objects in them are sent in the form that "
                    "version understands.  Unset: this release's version.  Remove the "
                    "cap once every compute service runs the new release."),
    cfg.StrOpt("conductor", default=None,
               help="Highest conductor RPC API version this service sends, e.g. while "
                    "the conductor still runs the previous release.  Unset: this "
                    "release's version."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    register_group(conf, group, opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(group.name, opts)]
