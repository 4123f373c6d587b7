"""Options of the ``[drain]`` group, read by whoever drains a host (the API)."""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.conf.groups import register_group

group = cfg.OptGroup("drain", title="Draining a host for maintenance")

opts = [
    cfg.FloatOpt("stream_bandwidth_mbps", default=1024.0, min=0.001,
                 help="MiB/s one migration stream is assumed to reach (the planner's "
                      "link estimate)."),
    cfg.FloatOpt("link_bandwidth_mbps", default=0.0, min=0.0,
                 help="MiB/s one host's link carries for all its migrations together "
                      "(the planner shares it among the streams leaving the drained host, "
                      "and among those entering each destination); 0: migrations do not "
                      "share a link."),
    cfg.FloatOpt("default_dirty_rate_mbps", default=0.0, min=0.0,
                 help="Dirty rate (MiB/s) assumed for a guest no earlier migration "
                      "measured."),
    cfg.IntOpt("max_attempts", default=2, min=1,
               help="Migrations tried per guest (each on another destination) before "
                    "the drain reports it and leaves it running where it is."),
    cfg.FloatOpt("poll_interval", default=0.05, min=0.001,
                 help="Seconds between the drain's looks at its migrations."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    register_group(conf, group, opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(group.name, opts)]
