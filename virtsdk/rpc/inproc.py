"""``inproc://``: an oslo.messaging driver whose broker lives in this process.

All services of a single-process deployment (tests, demos, the lab) talk through it.
It behaves like a small AMQP broker: named queues, competing consumers on a topic,
one queue per server, fanout bindings, notification queues with pools, and replies
routed by message id.  Every message is JSON-encoded on send and decoded on receipt
(requests, replies and raised errors alike), so whatever would fail on RabbitMQ fails
here too.  Waits block on condition variables: there is no polling loop, and a round
trip costs a few hundred microseconds rather than oslo's ``fake://`` 50 ms tick.

The URL's virtual host names the broker (``inproc://`` and ``inproc:///other`` are
isolated from each other, like RabbitMQ vhosts).  Nothing outside this module depends
on it: switching ``transport_url`` to ``rabbit://`` is a configuration change.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from typing import Any

import oslo_messaging
from oslo_config import cfg
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common
from oslo_serialization import jsonutils

LOG = logging.getLogger(__name__)

#: Notification queues keep at most this many unread messages (oldest dropped).
NOTIFICATION_QUEUE_MAX = 10000

_BROKERS: dict[str, _Broker] = {}
_BROKERS_LOCK = threading.Lock()


def encode(payload: dict[str, Any]) -> str:
    """JSON-encode a whole message as a broker-bound driver does (``ValueError`` /
    ``TypeError`` for anything that is not JSON-representable)."""
    return jsonutils.dumps(payload)


def decode(data: str) -> dict[str, Any]:
    return jsonutils.loads(data)


class _Queue:
    """A named queue: messages plus the listeners consuming from it."""

    def __init__(self, name: str, maxlen: int | None = None) -> None:
        self.name = name
        self.messages: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.consumers: list[_Listener] = []


class _ReplyWaiter:
    """The caller's side of one ``call``: its reply, or heartbeats, arrive here."""

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.replies: collections.deque[str] = collections.deque()


class _Broker:
    """Queues, bindings and pending replies of one virtual host.

    A single lock guards everything; every listener and reply waiter has a condition
    on that lock, so a publisher wakes exactly the consumer that should run.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.queues: dict[str, _Queue] = {}
        # (exchange, routing key) -> names of the queues bound to it
        self.bindings: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        self.replies: dict[str, _ReplyWaiter] = {}

    # -- called with self.lock held -----------------------------------------------------

    def declare(self, name: str, exchange: str, key: str, maxlen: int | None = None) -> _Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = _Queue(name, maxlen)
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
            self._wake_one(queue)
        return len(names)

    @staticmethod
    def _wake_one(queue: _Queue) -> None:
        # Round robin: wake the next idle consumer; a busy one finds the message
        # itself when it polls again.
        consumers = queue.consumers
        for i, listener in enumerate(consumers):
            if listener.waiting:
                listener.waiting = False
                listener.cond.notify()
                consumers.append(consumers.pop(i))
                return


def get_broker(name: str) -> _Broker:
    """The in-process broker for virtual host ``name``, created on first use."""
    with _BROKERS_LOCK:
        broker = _BROKERS.get(name)
        if broker is None:
            broker = _BROKERS[name] = _Broker(name)
        return broker


def reset_brokers() -> None:
    """Forget every in-process broker and its queued messages (tests only)."""
    with _BROKERS_LOCK:
        _BROKERS.clear()


def _rpc_key(topic: str, server: str | None = None) -> str:
    return f"{topic}.{server}" if server else topic


def _fanout_key(topic: str) -> str:
    return f"{topic}_fanout"


class InProcIncomingMessage(base.RpcIncomingMessage):
    """One decoded request; :meth:`reply` sends the JSON-encoded answer back."""

    def __init__(
        self,
        broker: _Broker,
        ctxt: dict[str, Any],
        message: dict[str, Any],
        msg_id: str | None,
        requeue_to: tuple[str, str, str],
        client_timeout: float | None,
    ) -> None:
        super().__init__(ctxt, message, msg_id)
        self._broker = broker
        self._reply_id = msg_id
        self._requeue_to = requeue_to
        self.client_timeout = client_timeout

    def _send_reply(self, payload: dict[str, Any]) -> None:
        if self._reply_id is None:
            return
        try:
            data = encode(payload)
        except (TypeError, ValueError) as exc:
            LOG.error("cannot encode the reply to %s: %s", self._reply_id, exc)
            data = encode({"failure": _encode_failure(exc)})
        broker = self._broker
        with broker.lock:
            waiter = broker.replies.get(self._reply_id)
            if waiter is None:
                LOG.info("dropping reply to %s: the caller stopped waiting", self._reply_id)
                return
            waiter.replies.append(data)
            waiter.cond.notify()

    def reply(self, reply: Any = None, failure: Any = None) -> None:
        """Called by the RPC server on the serving host, once per call message."""
        if failure is not None:
            self._send_reply({"failure": rpc_common.serialize_remote_exception(failure)})
        else:
            self._send_reply({"result": reply})

    def heartbeat(self) -> None:
        """Called by the RPC server while a long call runs: resets the caller's
        ``call_monitor_timeout``."""
        self._send_reply({"heartbeat": True})

    def requeue(self) -> None:
        exchange, key, data = self._requeue_to
        with self._broker.lock:
            self._broker.route(exchange, key, data)


def _encode_failure(exc: BaseException) -> str:
    return rpc_common.serialize_remote_exception((type(exc), exc, exc.__traceback__))


class _Listener(base.PollStyleListener):
    """Consumes from a set of queues, blocking on its condition until a message comes."""

    def __init__(
        self, broker: _Broker, queue_names: list[str], exclusive: list[str] | None = None
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

    def _next(self, timeout: float | None) -> tuple[_Queue, str] | None:
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


class _RpcListener(_Listener):
    @base.batch_poll_helper
    def poll(self, timeout: float | None = None) -> InProcIncomingMessage | None:
        got = self._next(timeout)
        if got is None:
            return None
        queue, data = got
        envelope = decode(data)
        return InProcIncomingMessage(
            self._broker,
            envelope["context"],
            envelope["message"],
            envelope.get("msg_id"),
            (envelope["exchange"], envelope["routing_key"], data),
            envelope.get("call_monitor_timeout"),
        )


class InProcNotificationMessage(base.IncomingMessage):
    def __init__(
        self, broker: _Broker, queue: _Queue, ctxt: dict[str, Any], message: dict[str, Any],
        data: str,
    ) -> None:
        super().__init__(ctxt, message)
        self._broker = broker
        self._queue = queue
        self._data = data

    def requeue(self) -> None:
        with self._broker.lock:
            self._queue.messages.appendleft(self._data)
            self._broker._wake_one(self._queue)  # noqa: SLF001


class _NotificationListener(_Listener):
    @base.batch_poll_helper
    def poll(self, timeout: float | None = None) -> InProcNotificationMessage | None:
        got = self._next(timeout)
        if got is None:
            return None
        queue, data = got
        envelope = decode(data)
        return InProcNotificationMessage(
            self._broker, queue, envelope["context"], envelope["message"], data
        )


class InProcDriver(base.BaseDriver):
    """The ``inproc://`` transport driver (entry point ``oslo.messaging.drivers``).

    oslo.messaging creates it from ``get_rpc_transport`` / ``get_notification_transport``
    in every service of the process; several drivers (one per configuration) share the
    broker of their URL's virtual host, like processes sharing a RabbitMQ server.
    """

    prefetch_size = 1

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        url: oslo_messaging.TransportURL,
        default_exchange: str | None = None,
        allowed_remote_exmods: list[str] | None = None,
    ) -> None:
        super().__init__(conf, url, default_exchange, allowed_remote_exmods)
        self._broker = get_broker(url.virtual_host or "")

    def require_features(self, requeue: bool = False) -> None:
        """Requeue is supported; nothing to refuse."""

    def _exchange(self, target: oslo_messaging.Target) -> str:
        return target.exchange or self._default_exchange or "openstack"

    def send(
        self,
        target: oslo_messaging.Target,
        ctxt: dict[str, Any],
        message: dict[str, Any],
        wait_for_reply: bool | None = None,
        timeout: float | None = None,
        call_monitor_timeout: float | None = None,
        retry: int | None = None,
        transport_options: Any = None,
    ) -> Any:
        """Publish one RPC request; for a call, block until its reply or a timeout.

        Called by ``RPCClient.call`` / ``cast`` on the calling thread.  Raises
        ``ValueError``/``TypeError`` if the message is not JSON-encodable (nothing is
        sent), ``oslo_messaging.MessagingTimeout`` when no reply arrives within
        ``timeout`` (or no heartbeat within ``call_monitor_timeout``), and re-raises an
        error the endpoint raised (as its own class for allowed modules, else
        ``oslo_messaging.RemoteError``).
        """
        exchange = self._exchange(target)
        if target.fanout:
            key = _fanout_key(target.topic)
        else:
            key = _rpc_key(target.topic, target.server)
        msg_id = uuid.uuid4().hex if wait_for_reply else None
        data = encode({
            "exchange": exchange,
            "routing_key": key,
            "context": ctxt,
            "message": message,
            "msg_id": msg_id,
            "call_monitor_timeout": call_monitor_timeout if wait_for_reply else None,
        })
        broker = self._broker
        if msg_id is None:
            with broker.lock:
                broker.route(exchange, key, data)
            return None
        waiter = _ReplyWaiter(broker.lock)
        with broker.lock:
            broker.replies[msg_id] = waiter
            broker.route(exchange, key, data)
            try:
                return self._wait_reply(waiter, target, msg_id, timeout, call_monitor_timeout)
            finally:
                del broker.replies[msg_id]

    def _wait_reply(
        self,
        waiter: _ReplyWaiter,
        target: oslo_messaging.Target,
        msg_id: str,
        timeout: float | None,
        call_monitor_timeout: float | None,
    ) -> Any:
        # Runs with the broker lock held (the condition releases it while waiting).
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        monitor = None if call_monitor_timeout is None else now + call_monitor_timeout
        while True:
            while waiter.replies:
                reply = decode(waiter.replies.popleft())
                if reply.get("heartbeat"):
                    if call_monitor_timeout is not None:
                        monitor = time.monotonic() + call_monitor_timeout
                    continue
                if "failure" in reply:
                    raise rpc_common.deserialize_remote_exception(
                        reply["failure"], self._allowed_remote_exmods
                    )
                return reply.get("result")
            ends = [t for t in (deadline, monitor) if t is not None]
            remaining = None if not ends else min(ends) - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise oslo_messaging.MessagingTimeout(
                    f"timed out after {timeout}s waiting for a reply to message "
                    f"{msg_id} (topic {target.topic!r}, server {target.server!r})"
                )
            waiter.cond.wait(remaining)

    def send_notification(
        self,
        target: oslo_messaging.Target,
        ctxt: dict[str, Any],
        message: dict[str, Any],
        version: float,
        retry: int | None = None,
    ) -> None:
        """Publish one notification (``target.topic`` is ``<topic>.<priority>``).

        Called by ``oslo_messaging.Notifier`` on the emitting thread.  Like a broker's
        notifier, it declares the topic's default queue so nothing is lost before the
        first listener starts; that queue keeps the newest
        :data:`NOTIFICATION_QUEUE_MAX` messages.
        """
        exchange = self._exchange(target)
        data = encode({"context": ctxt, "message": message, "version": version})
        with self._broker.lock:
            self._broker.declare(
                f"{exchange}/{target.topic}", exchange, target.topic, NOTIFICATION_QUEUE_MAX
            )
            self._broker.route(exchange, target.topic, data)

    def listen(
        self, target: oslo_messaging.Target, batch_size: int, batch_timeout: float | None
    ) -> base.PollStyleListenerAdapter:
        """Subscribe an RPC server: its topic queue (shared with the topic's other
        servers), its own server queue, and an exclusive fanout queue."""
        exchange = self._exchange(target)
        topic_q = f"{exchange}/{_rpc_key(target.topic)}"
        server_q = f"{exchange}/{_rpc_key(target.topic, target.server)}"
        fanout_q = f"{exchange}/{_fanout_key(target.topic)}/{uuid.uuid4().hex}"
        with self._broker.lock:
            self._broker.declare(server_q, exchange, _rpc_key(target.topic, target.server))
            self._broker.declare(topic_q, exchange, _rpc_key(target.topic))
            self._broker.declare(fanout_q, exchange, _fanout_key(target.topic))
        listener = _RpcListener(self._broker, [server_q, topic_q, fanout_q], [fanout_q])
        return base.PollStyleListenerAdapter(listener, batch_size, batch_timeout)

    def listen_for_notifications(
        self,
        targets_and_priorities: list[tuple[oslo_messaging.Target, str]],
        pool: str | None,
        batch_size: int,
        batch_timeout: float | None,
    ) -> base.PollStyleListenerAdapter:
        """Subscribe a notification listener; listeners sharing a ``pool`` share its
        queue, each pool gets its own copy of every notification."""
        names = []
        with self._broker.lock:
            for target, priority in targets_and_priorities:
                exchange = self._exchange(target)
                key = f"{target.topic}.{priority}"
                name = f"{exchange}/{key}" + (f"#{pool}" if pool else "")
                self._broker.declare(name, exchange, key, NOTIFICATION_QUEUE_MAX)
                names.append(name)
        listener = _NotificationListener(self._broker, names)
        return base.PollStyleListenerAdapter(listener, batch_size, batch_timeout)

    def cleanup(self) -> None:
        """Called by ``Transport.cleanup``; the broker outlives one driver, as a real
        broker outlives one client, so there is nothing to release."""
