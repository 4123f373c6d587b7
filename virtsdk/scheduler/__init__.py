"""Host selection: :func:`load_scheduler` builds the scheduler named in config.

The scheduler runs inside the conductor's process and is called directly (not over
RPC); it reads hosts and claims from the shared database.
"""

from __future__ import annotations

from oslo_config import cfg
from stevedore import driver as sd_driver
from stevedore.exception import NoMatches

from virtsdk.db.api import Database
from virtsdk.exceptions import Invalid
from virtsdk.scheduler.base import HostState, RequestSpec, Scheduler

NAMESPACE = "virtsdk.schedulers"

__all__ = ["HostState", "RequestSpec", "Scheduler", "load_scheduler"]


def load_scheduler(conf: cfg.ConfigOpts, db: Database) -> Scheduler:
    """The scheduler class registered as ``[scheduler] driver``, built for ``db``."""
    name = conf.scheduler.driver
    try:
        mgr = sd_driver.DriverManager(NAMESPACE, name, invoke_on_load=False)
    except NoMatches:
        raise Invalid(f"no scheduler named {name!r} in entry-point group {NAMESPACE}") \
            from None
    cls = mgr.driver
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise Invalid(f"scheduler {name!r} is {cls!r}, not a Scheduler subclass")
    return cls(conf, db)
