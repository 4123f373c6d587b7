"""Host selection: :func:`load_scheduler` builds the scheduler named in config.

The scheduler runs inside the conductor's process and is called directly (not over
RPC); it reads hosts and claims from the shared database.  Schedulers are plugins of
the entry-point group ``virtsdk.schedulers`` (see :mod:`virtsdk.plugins`).
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.db.api import Database
from virtsdk.plugins import SCHEDULERS, load
from virtsdk.scheduler.base import HostState, RequestSpec, Scheduler

__all__ = ["HostState", "RequestSpec", "Scheduler", "load_scheduler"]


def load_scheduler(conf: cfg.ConfigOpts, db: Database) -> Scheduler:
    """The scheduler class registered as ``[scheduler] driver``, built for ``db``."""
    return load(SCHEDULERS, conf.scheduler.driver, Scheduler)(conf, db)
