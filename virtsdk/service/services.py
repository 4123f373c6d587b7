"""The two services a deployment runs, as :class:`~virtsdk.service.launcher.ServiceBase`.

:class:`ComputeProcess` wraps :class:`virtsdk.compute.service.ComputeService` (one
host's manager, RPC server and heartbeat); :class:`ConductorProcess` wraps
:class:`virtsdk.conductor.service.ConductorService` (conductor and scheduler) and
keeps the conductor's own ``services`` row beating.  Each owns its database handle
and drops its broker connections when it stops.
"""

from __future__ import annotations

import logging
import threading

from oslo_config import cfg

from virtsdk import rpc
from virtsdk.compute.service import ComputeService
from virtsdk.conductor.rpcapi import TOPIC as CONDUCTOR_TOPIC
from virtsdk.conductor.rpcapi import ConductorAPI
from virtsdk.conductor.service import ConductorService
from virtsdk.db.api import Database
from virtsdk.service.launcher import ServiceBase
from virtsdk.services import COMPUTE, CONDUCTOR
from virtsdk.validation import validate_hostname

LOG = logging.getLogger(__name__)

class ComputeProcess(ServiceBase):
    """``virtsdk-compute``: the compute service of ``[DEFAULT] host``."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database | None = None) -> None:
        self.conf = conf
        self.host = validate_hostname(conf.host)
        self.db = db or Database.from_conf(conf)
        self.service = ComputeService(conf, self.host, self.db, ConductorAPI(conf))

    def start(self) -> None:
        self.service.start()

    def stop(self) -> None:
        """Finish the requests in flight (the launcher bounds the wait), then stop."""
        try:
            self.service.drain()
            self.service.stop(graceful=True)
        finally:
            rpc.cleanup()
            self.db.dispose()

    def reload(self) -> None:
        """Publish the (possibly changed) live-migration limits in the service row."""
        svc = self.db.service_get(self.host, COMPUTE)
        limits = {
            "max_inbound": self.conf.compute.max_concurrent_live_migrations_inbound,
            "max_outbound": self.conf.compute.max_concurrent_live_migrations_outbound,
        }
        if svc is not None and svc.limits != limits:
            self.db.service_register(self.host, COMPUTE, svc.topic,
                                     svc.capabilities, limits)


class ConductorProcess(ServiceBase):
    """``virtsdk-conductor``: conductor and scheduler, with a service row."""

    def __init__(self, conf: cfg.ConfigOpts, db: Database | None = None) -> None:
        self.conf = conf
        self.host = validate_hostname(conf.host)
        self.db = db or Database.from_conf(conf)
        self.service = ConductorService(conf, self.db, self.host)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def start(self) -> None:
        self.db.service_register(self.host, CONDUCTOR, CONDUCTOR_TOPIC, {}, {})
        self.service.start()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name=f"heartbeat-{CONDUCTOR}")
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.conf.compute.report_interval):
            try:
                self.db.service_heartbeat(self.host, CONDUCTOR)
            except Exception:  # noqa: BLE001 - the next beat retries
                LOG.exception("conductor heartbeat failed")

    def stop(self) -> None:
        self._stop.set()
        try:
            self.service.stop()
        finally:
            if self._beat is not None:
                self._beat.join(timeout=5)
            rpc.cleanup()
            self.db.dispose()
