"""virtsdk's services as processes: ``virtsdk-compute`` and ``virtsdk-conductor``.

One ``virtsdk-compute`` runs on every hypervisor host (``[DEFAULT] host`` names it),
one or more ``virtsdk-conductor`` (the scheduler runs inside) anywhere that reaches the
broker and the database.  Both read ``--config-file`` / ``--config-dir`` through
oslo.config (:mod:`virtsdk.service.config`) and run under cotyledon
(:mod:`virtsdk.service.launcher`): SIGTERM stops taking work and lets in-flight
requests finish within ``[DEFAULT] graceful_shutdown_timeout``; SIGHUP re-reads the
configuration files and applies the mutable options in place.  Each service keeps a
row in the ``services`` table and heartbeats it every ``[compute] report_interval``
seconds; ``virtsdk-manage service list`` shows which are up.
"""

from virtsdk._quiet import quiet_import_warnings

quiet_import_warnings()
