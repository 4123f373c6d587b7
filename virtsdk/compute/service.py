"""A compute service: one host's manager, its RPC server and its heartbeat.

Who uses it: :class:`virtsdk.cloud.EmbeddedCloud` (N hosts in one process) or a
per-host daemon.  ``start()`` registers the service, runs the manager's start-up
(driver init, resource report, crash recovery), then serves topic ``compute`` with
server = host and reports every ``[compute] report_interval`` seconds.  ``stop()``
stops serving; it leaves the hypervisor's guests alone (like a service restart).
Whoever builds it hands it the conductor's client (``conductor``, a
:class:`~virtsdk.conductor.rpcapi.ConductorAPI`), so compute never imports the layer
above it.
"""

from __future__ import annotations

import logging
import threading
import time

import oslo_messaging
from oslo_config import cfg

from virtsdk import rpc
from virtsdk.compute.cold_migration import ConductorClient
from virtsdk.compute.fence import ServiceFenced
from virtsdk.compute.manager import ComputeManager
from virtsdk.compute.rpcapi import TOPIC
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.plugins import COMPUTE_DRIVERS, load
from virtsdk.services import COMPUTE

LOG = logging.getLogger(__name__)


class ComputeService:
    """See the module docstring."""

    def __init__(self, conf: cfg.ConfigOpts, host: str, db: Database,
                 conductor: ConductorClient, driver_name: str | None = None) -> None:
        self.conf = conf
        self.host = host
        self.db = db
        driver_cls = load(COMPUTE_DRIVERS, driver_name or conf.compute_driver, ComputeDriver)
        self.driver = driver_cls(conf, host)
        self.manager = ComputeManager(conf, host, db, self.driver, conductor)
        self._server: oslo_messaging.MessageHandlingServer | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def start(self) -> None:
        limits = {
            "max_inbound": self.conf.compute.max_concurrent_live_migrations_inbound,
            "max_outbound": self.conf.compute.max_concurrent_live_migrations_outbound,
        }
        capabilities = {**self.driver.capabilities.as_dict(), "driver": self.driver.name}
        self.db.service_register(self.host, COMPUTE, TOPIC, capabilities, limits)
        self.manager._start()  # noqa: SLF001 - the service drives its manager
        self._server = rpc.get_server(self.conf, TOPIC, self.host, [self.manager])
        self._server.start()
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{self.host}",
                                           daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        """Heartbeat every ``report_interval``; the reconcile task every
        ``reconcile_interval`` (0: never)."""
        interval = self.conf.compute.reconcile_interval
        last_reconcile = time.monotonic()
        ctx = RequestContext(request_id=f"req-reconcile-{self.host}")
        try:
            while not self._stop.wait(self.conf.compute.report_interval):
                try:
                    self.manager._report_resources()  # noqa: SLF001
                except Exception:  # the next beat retries
                    LOG.exception("heartbeat of %s failed", self.host)
                if interval and time.monotonic() - last_reconcile >= interval:
                    last_reconcile = time.monotonic()
                    try:
                        self.manager.reconciler.run(ctx)
                    except Exception:  # noqa: BLE001 - the next pass retries
                        LOG.exception("reconcile of %s failed", self.host)
        except ServiceFenced:
            return  # this generation of the service was stopped: it beats no more

    def drain(self) -> None:
        """Stop taking requests and wait until those being handled are done (their
        flows finish and save their records); what is still queued for this host
        stays on the broker for the next start.  The heartbeat goes on until
        :meth:`stop`.  Used by the ``virtsdk-compute`` process on SIGTERM."""
        if self._server is not None:
            self._server.stop()
            self._server.wait()
            self._server = None
        # live migrations run on threads of their own, past the request that cast them
        self.manager.live.join()

    def stop(self, graceful: bool = True) -> None:
        """Stop serving and beating.  ``graceful`` waits for requests being handled;
        ``graceful=False`` simulates a crash: handlers stuck mid-flow are abandoned
        (their threads may still run, but no longer touch the records)."""
        self._stop.set()
        self.manager._stop()  # noqa: SLF001
        if self._server is not None:
            if graceful:
                self._server.stop()
                self._server.wait()
            else:  # as a killed process: the broker connection goes at once
                rpc.drop_server(self._server)
            self._server = None
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
