"""Running a virtsdk service as a process under cotyledon.

Why cotyledon and not ``oslo_service.service.launch``: oslo.service 4.x's threading
backend is itself built on cotyledon, but its wrapper turns SIGHUP into a restart of
the worker (cotyledon's default ``reload``) instead of a reload in place, and the
package still requires eventlet.  Using cotyledon directly keeps the same supervision
(a master process that restarts a worker that dies, SIGTERM handled with a bound,
SIGINT exits at once) and lets SIGHUP apply mutable options without a restart.

A :class:`ServiceBase` is built *in the worker process* (after the fork), so no broker
connection, database pool or driver handle crosses a fork.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable

import cotyledon
from cotyledon import oslo_config_glue
from cotyledon.types import WorkerId
from oslo_config import cfg

LOG = logging.getLogger(__name__)


class ServiceBase(abc.ABC):
    """What a console script runs: ``start`` returns once the service serves;
    ``stop`` stops taking work and returns when in-flight work is done (the
    launcher bounds it); ``reload`` applies options changed by SIGHUP."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def reload(self) -> None:  # noqa: B027 - optional hook
        """Called after the config files were re-read (mutable options only)."""


class _Worker(cotyledon.Service):
    """The cotyledon worker that builds, runs and stops one :class:`ServiceBase`."""

    def __init__(self, worker_id: WorkerId, conf: cfg.ConfigOpts,
                 factory: Callable[[cfg.ConfigOpts], ServiceBase]) -> None:
        super().__init__(worker_id)
        self.conf = conf
        self._factory = factory
        self._service: ServiceBase | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        service = self._factory(self.conf)
        with self._lock:
            if self._done.is_set():  # SIGTERM arrived while it was being built
                return
            self._service = service
        service.start()
        LOG.info("%s serving", self.name)
        self._done.wait()

    def terminate(self) -> None:
        with self._lock:
            self._done.set()
            service = self._service
        if service is not None:
            LOG.info("%s stopping: no new work, waiting for requests in flight", self.name)
            service.stop()
        LOG.info("%s stopped", self.name)

    def reload(self) -> None:
        changed = self.conf.mutate_config_files()
        LOG.info("%s: configuration re-read; mutable options changed: %s", self.name,
                 ", ".join(f"[{g or 'DEFAULT'}] {n}" for g, n in changed) or "none")
        if self._service is not None:
            self._service.reload()


def run(conf: cfg.ConfigOpts, name: str,
        factory: Callable[[cfg.ConfigOpts], ServiceBase]) -> int:
    """Run ``factory(conf)`` in one supervised worker until SIGTERM/SIGINT; returns
    the exit code.  ``name`` titles the processes (``ps``) and the log lines."""
    worker = type(name, (_Worker,), {"name": name})
    manager = cotyledon.ServiceManager()
    oslo_config_glue.link(manager, conf, reload_method="mutate")
    manager.add(worker, workers=1, args=(conf, factory))
    try:
        manager.run()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


__all__ = ["ServiceBase", "run"]
