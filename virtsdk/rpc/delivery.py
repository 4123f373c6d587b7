"""Sending through a broker outage of bounded length.

What a broker restart does to a message, on RabbitMQ with oslo.messaging's defaults
(non-durable queues): while the broker is down, a send blocks in oslo.messaging's
reconnect loop and goes out once the broker is back; but every queue was lost with
the broker, and each service declares its own queue again only when *its* connection
comes back.  A message published in between matches no queue and the broker drops
it without a word: the caller of a call waits ``timeout`` seconds for a reply that
cannot come (``MessagingTimeout``), a cast is simply lost.  Messages that sat in a
queue when the broker stopped are lost the same way.

:class:`Delivery` sends every message *mandatory* (oslo.messaging's
``TransportOptions(at_least_once=True)``): a message no queue takes comes back from
the broker as ``MessageUndeliverable`` right away.  It was never delivered, so
sending it again is always safe; that is done every :data:`RESEND_INTERVAL` seconds
until ``[DEFAULT] rpc_delivery_window`` has passed.  A call marked *idempotent*
(running it twice does what running it once does) is also sent again after a
``MessagingTimeout`` or a ``MessageDeliveryFailure`` within the same window: the
request or its reply may have been lost with the broker's queues.  Past the window
the caller gets ``MessageDeliveryFailure`` (never delivered) or the last error.

The in-process transport (``inproc://``) never loses a message; there the first
send is the only one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import oslo_messaging

from virtsdk.context import RequestContext

LOG = logging.getLogger(__name__)

#: seconds between two sends of a message that no queue took
RESEND_INTERVAL = 0.25

_AT_LEAST_ONCE = oslo_messaging.TransportOptions(at_least_once=True)


class Delivery:
    """Calls and casts of one RPC client, re-sent through a broker outage (see the
    module docstring).  ``window`` is ``[DEFAULT] rpc_delivery_window``."""

    def __init__(self, client: oslo_messaging.RPCClient, window: float) -> None:
        self._client = client
        self.window = window

    def _prepare(self, server: str | None, version: str | None) -> Any:
        kw: dict[str, Any] = {"transport_options": _AT_LEAST_ONCE}
        if server is not None:
            kw["server"] = server
        if version is not None:
            kw["version"] = version
        return self._client.prepare(**kw)

    def call(self, ctx: RequestContext, method: str, *, server: str | None = None,
             version: str | None = None, idempotent: bool = False, **kw: Any) -> Any:
        """``method``'s answer; re-sent as the module docstring says."""
        prepared = self._prepare(server, version)
        return self._send(lambda: prepared.call(ctx, method, **kw), method, server,
                          idempotent)

    def cast(self, ctx: RequestContext, method: str, *, server: str | None = None,
             **kw: Any) -> None:
        """Send ``method`` without waiting; re-sent while no queue takes it."""
        prepared = self._prepare(server, None)
        self._send(lambda: prepared.cast(ctx, method, **kw), method, server, False)

    def _send(self, send: Any, method: str, server: str | None, idempotent: bool) -> Any:
        deadline = time.monotonic() + self.window
        attempt = 0
        while True:
            attempt += 1
            try:
                return send()
            except oslo_messaging.MessageUndeliverable as exc:
                if time.monotonic() >= deadline:
                    raise oslo_messaging.MessageDeliveryFailure(
                        f"{method} to {self._where(server)}: no queue took the message "
                        f"in {self.window:g} s ({attempt} sends); is that service "
                        "running?") from exc
                LOG.log(logging.INFO if attempt == 1 else logging.DEBUG,
                        "%s to %s: not routed (receiver not connected yet); sending "
                        "again every %g s for up to %g s", method, self._where(server),
                        RESEND_INTERVAL, self.window)
                time.sleep(RESEND_INTERVAL)
            except (oslo_messaging.MessagingTimeout,
                    oslo_messaging.MessageDeliveryFailure) as exc:
                if not idempotent or time.monotonic() >= deadline:
                    raise
                LOG.warning("%s to %s: %s; sending the idempotent call again", method,
                            self._where(server), type(exc).__name__)
                time.sleep(RESEND_INTERVAL)

    def _where(self, server: str | None) -> str:
        topic = self._client.target.topic
        return f"{topic} on {server}" if server else str(topic)
