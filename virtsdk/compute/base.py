"""What every compute-manager mixin may use (attributes set by ComputeManager)."""

from __future__ import annotations

import threading
from typing import Any

from oslo_config import cfg

from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.conductor.rpcapi import ConductorAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.notifications import Notifier
from virtsdk.objects import Flavor, Instance


class ManagerBase:
    """Attribute declarations shared by the mixins of
    :class:`virtsdk.compute.manager.ComputeManager`."""

    conf: cfg.ConfigOpts
    host: str
    db: Database
    driver: ComputeDriver
    compute_rpc: ComputeAPI
    conductor_rpc: ConductorAPI
    notifier: Notifier
    stopped: threading.Event
    _live_threads: dict[int, threading.Thread]
    _aborted: set[int]
    _state_lock: threading.Lock

    def _instance(self, instance: Instance) -> Instance:
        raise NotImplementedError

    def _claim(self, instance: Instance, flavor: Flavor, what: str) -> None:
        raise NotImplementedError

    def _resource_lock(self) -> Any:
        raise NotImplementedError

    def _notify(self, ctx: RequestContext, event: str, instance: Instance,
                **extra: Any) -> None:
        raise NotImplementedError
