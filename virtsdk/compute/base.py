"""What every compute-manager mixin may use (attributes set by ComputeManager)."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from oslo_config import cfg

from virtsdk.compute.rpcapi import ComputeAPI
from virtsdk.context import RequestContext
from virtsdk.db.api import Database
from virtsdk.driver import ComputeDriver
from virtsdk.notifications import Notifier
from virtsdk.objects import Flavor, Instance


class ConductorClient(Protocol):
    """What a compute manager asks of the conductor, given to it by whoever builds it
    (:class:`virtsdk.conductor.rpcapi.ConductorAPI`; compute never imports the layer
    above it)."""

    def resize_instance(self, ctx: RequestContext, instance: Instance, flavor: Flavor,
                        alternates: list[str], migration_type: str) -> None:
        """Cast: schedule a refused cold migration / resize again on ``alternates``."""


class ManagerBase:
    """Attribute declarations shared by the mixins of
    :class:`virtsdk.compute.manager.ComputeManager`."""

    conf: cfg.ConfigOpts
    host: str
    db: Database
    driver: ComputeDriver
    compute_rpc: ComputeAPI
    conductor_rpc: ConductorClient
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
