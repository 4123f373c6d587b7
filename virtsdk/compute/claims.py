"""Resource claims of one compute host.

A flow that brings an instance to this host (``prep_resize``) claims the flavor
here under :meth:`HostClaims.lock` and records the claim (the instance's host or a
migration record) before releasing the lock, so two claims never both count the
same free capacity.
"""

from __future__ import annotations

from typing import Any

from oslo_concurrency import lockutils
from oslo_config import cfg

from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import InsufficientResources
from virtsdk.objects import Flavor, Instance
from virtsdk.resources import AllocationRatios, shortfalls, with_usage


class HostClaims:
    """Checks a flavor against this host's capacity and what is already claimed."""

    def __init__(self, conf: cfg.ConfigOpts, host: str, db: Database,
                 driver: ComputeDriver) -> None:
        self.conf = conf
        self.host = host
        self.db = db
        self.driver = driver

    def lock(self) -> Any:
        """The host's claim lock (a context manager; inter-thread, per host)."""
        return lockutils.lock(f"virtsdk-compute-resources-{self.host}")

    def claim(self, instance: Instance, flavor: Flavor, what: str) -> None:
        """Raise InsufficientResources (reschedulable) unless ``flavor`` fits here on
        top of everything claimed.  Call with :meth:`lock` held; the caller records
        the claim (instance host or migration) before releasing it."""
        res = with_usage(self.driver.get_available_resource(self.host),
                         self.db.host_usage(self.host, exclude_claim_of=instance.uuid))
        short = shortfalls(res, flavor, AllocationRatios.from_conf(self.conf))
        if short:
            raise InsufficientResources(
                f"host {self.host!r} lacks {', '.join(short)} for {what} "
                f"(flavor {flavor.name!r})")
