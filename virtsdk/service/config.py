"""Loading a service's configuration from ``--config-file`` / ``--config-dir``.

Who calls it: the console scripts (``virtsdk-compute``, ``virtsdk-conductor``,
``virtsdk-manage``) and the ``virtsdk`` CLI.  The result is a private
``ConfigOpts`` with every virtsdk option, the messaging options and the cotyledon
service options registered, and the configured driver's group too when asked.
Without any ``--config-file`` oslo.config's default search applies
(``~/.virtsdk/virtsdk.conf``, ``/etc/virtsdk/virtsdk.conf``, ...).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from cotyledon import oslo_config_glue
from oslo_config import cfg

from virtsdk import conf as conf_pkg
from virtsdk import plugins, rpc
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import Invalid

#: what SIGTERM waits for in-flight requests before the process exits anyway
DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT = 30

_cli_opts = [
    cfg.BoolOpt("debug", short="d", default=False, mutable=True,
                help="Log at DEBUG level (default INFO)."),
]


def load_conf(argv: Sequence[str], prog: str, with_driver: bool = False,
              description: str | None = None) -> cfg.ConfigOpts:
    """Parse ``argv`` (without the program name) and the config files it names.

    ``with_driver``: also register the options of ``[DEFAULT] compute_driver``'s
    group (a compute service).  Bad options or unreadable files raise
    ``oslo_config.cfg.Error`` subclasses with oslo's message; an unknown driver raises
    :class:`~virtsdk.exceptions.PluginNotFound`.
    """
    conf = cfg.ConfigOpts()
    conf_pkg.register_all(conf)
    rpc.register_opts(conf)
    oslo_config_glue.register_opts(conf)
    conf.set_default("graceful_shutdown_timeout", DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT)
    conf.register_cli_opts(_cli_opts)
    conf(list(argv), project="virtsdk", prog=prog, description=description)
    if with_driver:
        _register_driver_opts(conf)
    return conf


def _register_driver_opts(conf: cfg.ConfigOpts) -> None:
    driver = plugins.load(plugins.COMPUTE_DRIVERS, conf.compute_driver, ComputeDriver)
    plugins.register_opts(conf, driver)


def conf_from_files(config_files: Sequence[str], config_dirs: Sequence[str] = (),
                    with_driver: bool = False) -> cfg.ConfigOpts:
    """The same, for a caller that parsed its own command line (the ``virtsdk``
    CLI): only the given files and directories are read."""
    argv: list[str] = []
    for path in config_files:
        argv += ["--config-file", path]
    for path in config_dirs:
        argv += ["--config-dir", path]
    if not argv:
        conf = cfg.ConfigOpts()
        conf_pkg.register_all(conf)
        rpc.register_opts(conf)
        conf([], project="virtsdk", default_config_files=[], default_config_dirs=[])
        if with_driver:
            _register_driver_opts(conf)
        return conf
    return load_conf(argv, "virtsdk", with_driver)


def setup_logging(conf: cfg.ConfigOpts) -> None:
    """Log to stderr with time, pid and logger name (systemd's journal keeps it)."""
    logging.basicConfig(
        level=logging.DEBUG if conf.debug else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


def check_host(conf: cfg.ConfigOpts) -> str:
    """``[DEFAULT] host``, validated as a hostname (it becomes an RPC server name)."""
    from virtsdk.validation import validate_hostname

    try:
        validate_hostname(conf.host)
    except Invalid as exc:
        raise Invalid(f"[DEFAULT] host: {exc}") from None
    return str(conf.host)
