"""``inproc://``: an oslo.messaging driver whose broker lives in this process.

All services of a single-process deployment (tests, demos, the lab) talk through it.
It behaves like a small AMQP broker: named queues, competing consumers on a topic,
one queue per server, fanout bindings, notification queues with pools, and replies
routed by message id.  Every message is JSON-encoded on send and decoded on receipt
(requests, replies and raised errors alike), so whatever would fail on RabbitMQ fails
here too.  Waits block on condition variables: there is no polling loop, and a round
trip costs a few hundred microseconds rather than oslo's ``fake://`` 50 ms tick.

The URL's virtual host names the broker (``inproc://`` and ``inproc:///other`` are
isolated from each other, like RabbitMQ vhosts); the broker itself is
:mod:`virtsdk.rpc.inproc_broker`.  Nothing outside these two modules depends on them:
switching ``transport_url`` to ``rabbit://`` is a configuration change.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import oslo_messaging
from oslo_config import cfg
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common

from virtsdk.rpc.inproc_broker import (
    NOTIFICATION_QUEUE_MAX,
    Broker,
    Consumer,
    Queue,
    ReplyWaiter,
    decode,
    encode,
    get_broker,
)

LOG = logging.getLogger(__name__)


def _rpc_key(topic: str, server: str | None = None) -> str:
    return f"{topic}.{server}" if server else topic


def _fanout_key(topic: str) -> str:
    return f"{topic}_fanout"


class InProcIncomingMessage(base.RpcIncomingMessage):
    """One decoded request; :meth:`reply` sends the JSON-encoded answer back."""

    def __init__(
        self,
        broker: Broker,
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


def _timeout_reason(
    deadline: float | None, timeout: float | None, call_monitor_timeout: float | None
) -> str:
    if deadline is not None and time.monotonic() >= deadline:
        return f"timed out after {timeout}s"
    return f"no heartbeat from the server for {call_monitor_timeout}s"


def _encode_failure(exc: BaseException) -> str:
    data: str = rpc_common.serialize_remote_exception((type(exc), exc, exc.__traceback__))
    return data


class _RpcListener(Consumer):
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
        self, broker: Broker, queue: Queue, ctxt: dict[str, Any], message: dict[str, Any],
        data: str,
    ) -> None:
        super().__init__(ctxt, message)
        self._broker = broker
        self._queue = queue
        self._data = data

    def requeue(self) -> None:
        with self._broker.lock:
            self._queue.messages.appendleft(self._data)
            self._broker.wake_one(self._queue)


class _NotificationListener(Consumer):
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
        waiter = ReplyWaiter(broker.lock)
        with broker.lock:
            broker.replies[msg_id] = waiter
            broker.route(exchange, key, data)
        try:
            reply = self._wait_reply(waiter, target, msg_id, timeout, call_monitor_timeout)
        finally:
            with broker.lock:
                del broker.replies[msg_id]
        if "failure" in reply:
            raise rpc_common.deserialize_remote_exception(
                reply["failure"], self._allowed_remote_exmods
            )
        return reply.get("result")

    @staticmethod
    def _wait_reply(
        waiter: ReplyWaiter,
        target: oslo_messaging.Target,
        msg_id: str,
        timeout: float | None,
        call_monitor_timeout: float | None,
    ) -> dict[str, Any]:
        """Block until the decoded reply (not a heartbeat) arrives; raise
        ``MessagingTimeout`` at ``timeout`` or when heartbeats stop."""
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        monitor = None if call_monitor_timeout is None else now + call_monitor_timeout
        while True:
            with waiter.cond:
                while not waiter.replies:
                    ends = [t for t in (deadline, monitor) if t is not None]
                    remaining = None if not ends else min(ends) - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise oslo_messaging.MessagingTimeout(
                            _timeout_reason(deadline, timeout, call_monitor_timeout)
                            + f" waiting for a reply to message {msg_id} "
                            f"(topic {target.topic!r}, server {target.server!r})"
                        )
                    waiter.cond.wait(remaining)
                data = waiter.replies.popleft()
            reply = decode(data)
            if not reply.get("heartbeat"):
                return reply
            if call_monitor_timeout is not None:
                monitor = time.monotonic() + call_monitor_timeout

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
