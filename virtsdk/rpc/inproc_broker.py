"""The in-process message broker behind ``inproc://`` (:mod:`virtsdk.rpc.inproc`).

Named queues with bindings from (exchange, routing key), competing consumers that
block on condition variables, and reply slots keyed by message id: the few parts of
an AMQP broker that oslo.messaging's RPC and notification patterns need.  One broker
exists per virtual host, shared by every driver instance in the process.  Only
:mod:`virtsdk.rpc.inproc` uses this module.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from oslo_messaging._drivers import base
from oslo_serialization import jsonutils

LOG = logging.getLogger(__name__)

#: Notification queues keep at most this many unread messages (oldest dropped).
NOTIFICATION_QUEUE_MAX = 10000

_BROKERS: dict[str, Broker] = {}
_BROKERS_LOCK = threading.Lock()


def encode(payload: dict[str, Any]) -> str:
    """JSON-encode a whole message as a broker-bound driver does (``ValueError`` /
    ``TypeError`` for anything that is not JSON-representable)."""
    return jsonutils.dumps(payload)


def decode(data: str) -> dict[str, Any]:
    payload: dict[str, Any] = jsonutils.loads(data)
    return payload


class Queue:
    """A named queue: messages plus the listeners consuming from it."""

    def __init__(self, name: str, maxlen: int | None = None) -> None:
        self.name = name
        self.messages: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.consumers: list[Consumer] = []


class ReplyWaiter:
    """The caller's side of one ``call``: its reply, or heartbeats, arrive here."""

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.replies: collections.deque[str] = collections.deque()


class Broker:
    """Queues, bindings and pending replies of one virtual host.

    A single lock guards everything; every listener and reply waiter has a condition
    on that lock, so a publisher wakes exactly the consumer that should run.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.queues: dict[str, Queue] = {}
        # (exchange, routing key) -> names of the queues bound to it
        self.bindings: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        self.replies: dict[str, ReplyWaiter] = {}

    # -- called with self.lock held -----------------------------------------------------

    def declare(self, name: str, exchange: str, key: str, maxlen: int | None = None) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name, maxlen)
        self.bindings[(exchange, key)].add(name)
        return queue

    def delete(self, name: str) -> None:
        self.queues.pop(name, None)
        for names in self.bindings.values():
            names.discard(name)

    def route(self, exchange: str, key: str, data: str) -> int:
        """Put ``data`` on every queue bound to ``(exchange, key)``; return how many."""
        names = self.bindings.get((exchange, key), ())
        for name in names:
            queue = self.queues[name]
            queue.messages.append(data)
            self.wake_one(queue)
        return len(names)

    @staticmethod
    def wake_one(queue: Queue) -> None:
        # Round robin: wake the next idle consumer; a busy one finds the message
        # itself when it polls again.
        consumers = queue.consumers
        for i, consumer in enumerate(consumers):
            if consumer.waiting:
                consumer.waiting = False
                consumer.cond.notify()
                consumers.append(consumers.pop(i))
                return


def get_broker(name: str) -> Broker:
    """The in-process broker for virtual host ``name``, created on first use."""
    with _BROKERS_LOCK:
        broker = _BROKERS.get(name)
        if broker is None:
            broker = _BROKERS[name] = Broker(name)
        return broker


def reset_brokers() -> None:
    """Forget every in-process broker and its queued messages (tests only)."""
    with _BROKERS_LOCK:
        _BROKERS.clear()


class Consumer(base.PollStyleListener):
    """Consumes from a set of queues, blocking on its condition until a message comes."""

    def __init__(
        self, broker: Broker, queue_names: list[str], exclusive: list[str] | None = None
    ) -> None:
        super().__init__()
        self._broker = broker
        self.cond = threading.Condition(broker.lock)
        self.waiting = False
        self._stopped = False
        self._exclusive = exclusive or []
        with broker.lock:
            self._queues = [broker.queues[name] for name in queue_names]
            for queue in self._queues:
                queue.consumers.append(self)

    def _next(self, timeout: float | None) -> tuple[Queue, str] | None:
        """Take the next message from this consumer's queues (server queue first),
        blocking up to ``timeout`` seconds; ``None`` on timeout or once stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._broker.lock:
            while not self._stopped:
                for queue in self._queues:
                    if queue.messages:
                        return queue, queue.messages.popleft()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self.waiting = True
                self.cond.wait(remaining)
                self.waiting = False
            return None

    def stop(self) -> None:
        """Called by the server from another thread: wakes and ends :meth:`poll`.

        Messages not yet taken stay in their queues for the next consumer."""
        with self._broker.lock:
            self._stopped = True
            self.cond.notify_all()

    def cleanup(self) -> None:
        """Detach from the queues; a listener's exclusive (fanout) queues go away."""
        broker = self._broker
        with broker.lock:
            for queue in self._queues:
                if self in queue.consumers:
                    queue.consumers.remove(self)
            for name in self._exclusive:
                broker.delete(name)
