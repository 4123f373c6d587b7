"""The conductor service: the scheduler plus the conductor's RPC server.

Who uses it: :class:`virtsdk.cloud.EmbeddedCloud` or a conductor daemon; one per
deployment is enough (more would compete for messages on topic ``conductor``).
"""

from __future__ import annotations

import oslo_messaging
from oslo_config import cfg

from virtsdk import rpc
from virtsdk.conductor.manager import HOST, ConductorManager
from virtsdk.conductor.rpcapi import TOPIC
from virtsdk.db.api import Database
from virtsdk.scheduler import load_scheduler


class ConductorService:
    def __init__(self, conf: cfg.ConfigOpts, db: Database, host: str = HOST) -> None:
        self.conf = conf
        self.host = host
        self.scheduler = load_scheduler(conf, db)
        self.manager = ConductorManager(conf, db, self.scheduler)
        self._server: oslo_messaging.MessageHandlingServer | None = None

    def start(self) -> None:
        self._server = rpc.get_server(self.conf, TOPIC, self.host, [self.manager])
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server.wait()
            self._server = None
