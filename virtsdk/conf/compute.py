"""Options of the ``[compute]`` group, read by every compute manager (one per host)."""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.conf.groups import register_group

group = cfg.OptGroup("compute", title="The compute manager of a host")

opts = [
    cfg.IntOpt("max_concurrent_live_migrations_outbound", default=1, min=0,
               mutable=True,
               help="Live migrations this host runs as the source at once; more wait "
                    "in status 'queued'.  0 means unlimited."),
    cfg.IntOpt("max_concurrent_live_migrations_inbound", default=2, min=0,
               mutable=True,
               help="Live migrations this host receives at once; more wait in status "
                    "'queued' on their source.  0 means unlimited."),
    cfg.IntOpt("shutdown_timeout", default=60, min=0,
               help="Seconds a guest gets to shut down cleanly before a cold "
                    "migration forces it off."),
    cfg.IntOpt("shutdown_retry_interval", default=10, min=1,
               help="Seconds between clean-shutdown requests during shutdown_timeout."),
    cfg.FloatOpt("report_interval", default=10.0, min=0.01,
                 mutable=True,
               help="Seconds between a compute service's heartbeats and resource "
                      "reports."),
    cfg.FloatOpt("service_down_time", default=60.0, min=0.01,
                 mutable=True,
               help="A service whose last heartbeat is older than this many seconds "
                      "is down: the scheduler skips it and migrations refuse it."),
    cfg.FloatOpt("queue_poll_interval", default=0.05, min=0.001,
                 help="Seconds between checks for a free slot while a live migration "
                      "waits in status 'queued'."),
    cfg.IntOpt("live_migration_retry_count", default=30, min=1,
               help="Tries for a destination host during live-migration scheduling."),
    cfg.FloatOpt("reconcile_interval", default=60.0, min=0,
                 help="Seconds between two runs of the reconcile task that compares "
                      "what the hypervisor holds with the database (0: never)."),
    cfg.FloatOpt("reconcile_grace", default=300.0, min=0,
                 help="Seconds something must stay safely orphaned (seen by the "
                      "reconcile task with no owner in the database) before that "
                      "task removes it; anything else is only reported."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    register_group(conf, group, opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(group.name, opts)]
