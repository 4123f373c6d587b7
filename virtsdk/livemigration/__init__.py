"""Live-migration monitoring and convergence, shared by every driver.

A driver wraps its running migration in a :class:`~virtsdk.livemigration.base.MigrationJob`
and hands it to :func:`virtsdk.livemigration.monitor.monitor_migration` together with
the convergence policies from configuration (entry-point group
``virtsdk.convergence_policies``).  The monitor samples job stats, keeps progress
monotonic, and applies the actions the policies decide.
"""
