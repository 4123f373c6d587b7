"""Options of the ``[live_migration]`` group, read by every driver's live migration.

Registered by :func:`virtsdk.conf.register_all` (and by
:func:`virtsdk.live_migration.loader.load_policies` on demand).  Defaults follow Nova's
libvirt driver (``live_migration_downtime*``, ``live_migration_completion_timeout``,
``live_migration_timeout_action``, ``live_migration_bandwidth``,
``live_migration_permit_post_copy`` / ``_auto_converge``) plus the stall-detection and
post-copy knobs of the shared policies.
"""

from __future__ import annotations

from oslo_config import cfg

GROUP = "live_migration"

TITLE = "Live-migration monitoring and convergence policies"

opts: list[cfg.Opt] = [
    cfg.ListOpt(
        "policies",
        default=["linear_downtime", "completion_timeout"],
        help="Convergence policies (entry points of group virtsdk.convergence_policies) "
             "applied to every live migration, in order.  Available: linear_downtime, "
             "exponential_downtime, completion_timeout, stall_detection, postcopy, "
             "auto_converge, adaptive (predicts convergence from measured dirty rate "
             "and bandwidth; limits the guest's CPU from the start, raises downtime, "
             "switches to post-copy as soon as pre-copy would overrun when permitted).",
    ),
    cfg.FloatOpt(
        "monitor_interval", default=0.5, min=0.01,
        help="Seconds between two samples of a running migration's job stats.",
    ),
    cfg.IntOpt(
        "downtime", default=500, min=100,
        help="Maximum downtime in milliseconds the downtime policies raise to.",
    ),
    cfg.IntOpt(
        "downtime_steps", default=10, min=3,
        help="Number of steps the downtime policies take to reach `downtime`.",
    ),
    cfg.IntOpt(
        "downtime_delay", default=75, min=3,
        help="Seconds per GiB of RAM+disk between two downtime steps (Nova's "
             "live_migration_downtime_delay): linear_downtime applies step i at "
             "i * int(downtime_delay * data_gb) seconds; exponential_downtime spreads "
             "its N steps over downtime_delay * data_gb seconds.",
    ),
    cfg.IntOpt(
        "completion_timeout", default=800, min=0,
        help="Seconds per GiB of RAM+disk a migration may take before "
             "`timeout_action` is taken (0 disables the timeout).",
    ),
    cfg.StrOpt(
        "timeout_action", default="abort", choices=["abort", "force_complete"],
        help="What completion_timeout does when the time is up: abort the migration "
             "(the guest stays on the source) or force it to complete (switch to "
             "post-copy when permitted, otherwise pause the guest).",
    ),
    cfg.FloatOpt(
        "stall_window", default=150.0, min=1.0,
        help="Seconds the remaining data may fail to reach a new minimum before "
             "stall_detection acts (KubeVirt's progressTimeout).",
    ),
    cfg.StrOpt(
        "stall_action", default="abort", choices=["abort", "postcopy"],
        help="What stall_detection does with a stalled migration.",
    ),
    cfg.IntOpt(
        "postcopy_after_iterations", default=5, min=1,
        help="The postcopy policy switches to post-copy once the memory iteration "
             "reaches this number, or earlier when an iteration cut the remaining "
             "data by less than 10%.",
    ),
    cfg.IntOpt(
        "bandwidth", default=0, min=0,
        help="Maximum bandwidth in MiB/s a migration may use (0: unlimited).",
    ),
    cfg.IntOpt(
        "postcopy_bandwidth", default=0, min=0,
        help="Maximum bandwidth in MiB/s of the post-copy phase (0: unlimited, QEMU's "
             "default and Nova's behaviour: `bandwidth` then limits pre-copy only).  "
             "A cap here makes the guest's page faults wait behind the capped stream: "
             "on the lab a 2 MiB/s cap turned a 0.2 s guest pause into 3.8 s.",
    ),
    cfg.IntOpt(
        "max_throttle", default=88, min=0, max=99,
        help="The largest share of a guest's CPU time, in percent, the adaptive policy "
             "takes away to make pre-copy converge (its CPU limit for the migration).  "
             "A guest held much lower stalls: on the lab a guest limited to 3% of its "
             "CPU for 80 s stopped answering and never recovered; at 10-12% it ran on.",
    ),
    cfg.BoolOpt(
        "permit_post_copy", default=False,
        help="Allow switching to post-copy; adds the postcopy policy to `policies` "
             "and makes completion_timeout's force_complete switch to post-copy.",
    ),
    cfg.BoolOpt(
        "permit_auto_converge", default=False,
        help="Start migrations with CPU throttling (auto-converge); adds the "
             "auto_converge policy to `policies`.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the group on ``conf``; safe to call more than once.

    A fresh OptGroup each time: oslo.config copies a registered group shallowly, so a
    shared OptGroup object would share overrides between ConfigOpts instances."""
    conf.register_group(cfg.OptGroup(GROUP, title=TITLE))
    conf.register_opts(opts, group=GROUP)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(GROUP, opts)]
