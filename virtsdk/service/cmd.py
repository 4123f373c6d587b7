"""Console scripts ``virtsdk-compute`` and ``virtsdk-conductor``.

Both take oslo.config's ``--config-file`` / ``--config-dir`` (and ``--debug``), check
what they can before forking (the host name, the driver, the database and broker URLs
parse), then run under :func:`virtsdk.service.launcher.run`.  A bad configuration
exits 2 with one line naming the problem, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import oslo_messaging
from oslo_config import cfg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from virtsdk.db import migration
from virtsdk.db.api import connection_url
from virtsdk.service import config, launcher
from virtsdk.service.errors import error_text, is_operator_error
from virtsdk.service.services import ComputeProcess, ConductorProcess
from virtsdk.validation import validate_hostname


def _prepare(argv: Sequence[str] | None, prog: str, with_driver: bool,
             description: str) -> cfg.ConfigOpts:
    conf = config.load_conf(sys.argv[1:] if argv is None else argv, prog, with_driver,
                            description)
    validate_hostname(conf.host)
    try:
        make_url(connection_url(conf))
    except ArgumentError as exc:
        raise cfg.Error(f"[database] connection: {exc}") from None
    oslo_messaging.TransportURL.parse(conf, conf.transport_url)
    migration.check_current(connection_url(conf))  # SchemaNotCurrent: run db sync
    return conf


def _main(argv: Sequence[str] | None, prog: str, with_driver: bool, description: str,
          factory: Callable[[cfg.ConfigOpts], launcher.ServiceBase]) -> int:
    try:
        conf = _prepare(argv, prog, with_driver, description)
    except Exception as exc:  # one line, no traceback, for what an operator can fix
        if not (is_operator_error(exc) or isinstance(exc, oslo_messaging.InvalidTransportURL)):
            raise
        print(f"{prog}: error: {error_text(exc)}", file=sys.stderr)
        return 2
    config.setup_logging(conf)
    return launcher.run(conf, prog, factory)


def compute_main(argv: Sequence[str] | None = None) -> int:
    """``virtsdk-compute``: the compute service of ``[DEFAULT] host``."""
    return _main(argv, "virtsdk-compute", True,
                 "virtsdk compute service: one per hypervisor host", ComputeProcess)


def conductor_main(argv: Sequence[str] | None = None) -> int:
    """``virtsdk-conductor``: the conductor and the scheduler."""
    return _main(argv, "virtsdk-conductor", False,
                 "virtsdk conductor service (the scheduler runs inside)", ConductorProcess)
