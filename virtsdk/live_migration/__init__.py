"""Live-migration monitoring and convergence, shared by every driver.

A driver wraps its running migration in a :class:`~virtsdk.live_migration.base.MigrationJob`
and hands it to :func:`virtsdk.live_migration.monitor.monitor_migration` together with
the convergence policies from configuration (entry-point group
``virtsdk.convergence_policies``).  The monitor samples job stats, hands the progress
callback samples whose progress never goes down, lets the policies decide on the raw
samples, applies their actions and records every decision (with the numbers behind
it) in a timeline that travels on each sample (``JobStats.timeline``) into the
migration record.  Statistics are measurements: a downtime counts only when the
hypervisor measured it (``JobStats.downtime_measured``).

Typical use in a driver's ``live_migration`` (source host)::

    from virtsdk.live_migration.loader import load_configured_policies
    from virtsdk.live_migration.monitor import monitor_migration
    from virtsdk.live_migration.policies import required_flags

    policies = load_configured_policies(conf)    # fresh objects for this migration
    flags = required_flags(policies)             # {"postcopy", "auto_converge"} subset
    job = start_the_job(flags)                   # the driver's MigrationJob
    final = monitor_migration(job, policies, progress,
                              conf.live_migration.monitor_interval, data_gb=ram_disk_gb)
    if final.job_type == "completed": post_method(...)
    else: recover_method(...); raise ...

Options live in group ``[live_migration]`` (:mod:`virtsdk.live_migration.opts`).
"""
