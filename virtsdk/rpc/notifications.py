"""Receiving notifications: :class:`NotificationCollector` for tests, demos and tools.

The compute manager emits notifications with :func:`virtsdk.rpc.get_notifier`; a
collector subscribes to the same topics over whatever transport is configured and
keeps what arrives, so a test can wait for ``live_migration.pre.start`` without
knowing how it travelled.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import oslo_messaging
from oslo_config import cfg

from virtsdk import rpc

PRIORITIES = ("audit", "debug", "info", "warn", "error", "critical", "sample")


@dataclass
class Notification:
    """One received notification, payload rebuilt by the virtsdk serializer."""

    priority: str
    publisher_id: str
    event_type: str
    payload: Any
    context: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


class _Endpoint:
    """oslo.messaging notification endpoint: one method per priority."""

    def __init__(self, collector: NotificationCollector) -> None:
        self._collector = collector
        for priority in PRIORITIES:
            setattr(self, priority, self._handler(priority))

    def _handler(self, priority: str) -> Any:
        def handle(
            ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
        ) -> None:
            self._collector._add(  # noqa: SLF001
                Notification(priority, publisher_id, event_type, payload, ctxt,
                             dict(metadata or {}))
            )
        return handle


class NotificationCollector:
    """Listens for notifications and keeps them in arrival order.

    Start it (``with NotificationCollector(conf) as nc:`` or :meth:`start`) *before*
    the code that emits; by default it uses its own pool, so it receives its own copy
    of every notification sent after it started and takes none away from other
    listeners.  Works on any transport (``inproc://``, ``rabbit://``, ``fake://``).
    Called from tests and tools in the process that wants to observe; thread-safe.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        topics: list[str] | None = None,
        pool: str | None = None,
    ) -> None:
        transport = rpc.get_notification_transport(conf)
        topics = topics or rpc.notification_topics(conf)
        targets = [oslo_messaging.Target(topic=topic) for topic in topics]
        self._cond = threading.Condition()
        self._received: list[Notification] = []
        self._listener = rpc.prompt_stop(oslo_messaging.get_notification_listener(
            transport,
            targets,
            [_Endpoint(self)],
            serializer=rpc.VirtObjectSerializer(),
            pool=pool or f"collector-{uuid.uuid4().hex}",
        ))
        self._running = False

    def _add(self, notification: Notification) -> None:
        with self._cond:
            self._received.append(notification)
            self._cond.notify_all()

    def start(self) -> None:
        """Subscribe; notifications sent from now on are collected."""
        self._listener.start()
        self._running = True

    def stop(self) -> None:
        """Unsubscribe and wait for in-flight deliveries to finish."""
        if self._running:
            self._running = False
            self._listener.stop()
            self._listener.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def notifications(self) -> list[Notification]:
        """A snapshot of everything received so far."""
        with self._cond:
            return list(self._received)

    def event_types(self) -> list[str]:
        """The event types received so far, in arrival order."""
        return [n.event_type for n in self.notifications]

    def wait_for(
        self, event_type: str, count: int = 1, timeout: float = 10.0
    ) -> list[Notification]:
        """Block until ``count`` notifications of ``event_type`` have arrived.

        Returns them; raises :class:`TimeoutError` naming what did arrive if they do
        not come within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [n for n in self._received if n.event_type == event_type]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [n.event_type for n in self._received]
                    raise TimeoutError(
                        f"{len(found)} of {count} {event_type!r} notifications arrived "
                        f"within {timeout}s; received: {seen}"
                    )
                self._cond.wait(remaining)
