"""The conductor service: the scheduler plus the conductor's RPC server.

Who uses it: :class:`virtsdk.cloud.EmbeddedCloud` or a conductor daemon; one per
deployment is enough (more would compete for messages on topic ``conductor``).
``start()`` first recovers what a crash of the previous conductor cut off
(:meth:`ConductorManager.recover_interrupted`), then serves.  Everything the
manager and its scheduler change goes through a :class:`~virtsdk.compute.fence.Fence`,
so ``stop(graceful=False)`` is a real crash: a request still running in this
process afterwards can change nothing.
"""

from __future__ import annotations

import logging
import threading

import oslo_messaging
from oslo_config import cfg

from virtsdk import rpc
from virtsdk.compute.fence import Fence, ServiceFenced
from virtsdk.conductor.manager import HOST, ConductorManager
from virtsdk.conductor.rpcapi import TOPIC
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.scheduler import load_scheduler

LOG = logging.getLogger(__name__)


class ConductorService:
    def __init__(self, conf: cfg.ConfigOpts, db: Database, host: str = HOST) -> None:
        self.conf = conf
        self.host = host
        self.fence = Fence(f"conductor {host}")
        guarded = self.fence.guard(db, serialize=True)
        self.scheduler = load_scheduler(conf, guarded)
        self.manager = ConductorManager(conf, guarded, self.scheduler, self.fence)
        self._server: oslo_messaging.MessageHandlingServer | None = None
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        self.manager.recover_interrupted(RequestContext(request_id="req-conductor-init"))
        self._server = rpc.get_server(self.conf, TOPIC, self.host, [self.manager])
        self._server.start()
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._settle_lost, daemon=True,
                                         name=f"lost-requests-{self.host}")
        self._sweeper.start()

    def _settle_lost(self) -> None:
        """Every quarter of ``[api] lost_request_timeout``: settle the migration
        requests that were lost on their way here
        (:meth:`ConductorManager.settle_lost_requests`)."""
        bound = self.conf.api.lost_request_timeout
        ctx = RequestContext(request_id=f"req-lost-requests-{self.host}")
        while not self._stop.wait(bound / 4):
            try:
                self.manager.settle_lost_requests(ctx, bound)
            except ServiceFenced:
                return
            except Exception:  # noqa: BLE001 - the next pass retries
                LOG.exception("settling lost requests failed")

    def stop(self, graceful: bool = True) -> None:
        """Stop serving; ``graceful=False`` simulates a crash (see the module doc)."""
        self._stop.set()
        if not graceful:
            self.fence.close()
        if self._server is not None:
            self._server.stop()
            if graceful:
                self._server.wait()
            self._server = None
        self.fence.close()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
            self._sweeper = None
