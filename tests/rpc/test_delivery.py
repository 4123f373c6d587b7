"""Messages of the service clients survive a broker outage of bounded length
(:mod:`virtsdk.rpc.delivery`), on a real RabbitMQ node.

After a broker restart every queue is gone until its service reconnects and declares
it again; a message sent in between matches no queue.  The same situation is made
here without waiting for a restart: the receiver's queue does not exist yet when the
message is sent (its server starts a moment later)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import oslo_messaging
import pytest
from oslo_config import cfg

from tests.rpc.conftest import make_conf
from tests.rpc.endpoints import Recorder
from virtsdk import rpc
from virtsdk.context import RequestContext


@pytest.fixture
def rabbit_conf(rabbit_url: str) -> cfg.ConfigOpts:
    return make_conf(rabbit_url)


@pytest.fixture
def late_server(start_server: Callable[..., oslo_messaging.RPCServer]
                ) -> Iterator[Callable[[cfg.ConfigOpts, Recorder, float], None]]:
    """Start a compute server on h1 ``delay`` seconds from now, in the background."""
    threads: list[threading.Thread] = []

    def later(conf: cfg.ConfigOpts, endpoint: Recorder, delay: float) -> None:
        def run() -> None:
            time.sleep(delay)
            start_server(conf, "compute", "h1", [endpoint])
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield later
    for thread in threads:
        thread.join()


def test_plain_client_loses_a_call_sent_before_the_queue_exists(
        rabbit_conf: cfg.ConfigOpts, late_server: Callable[..., None]) -> None:
    """The defect the delivery layer exists for: the broker drops the message."""
    endpoint = Recorder("h1")
    late_server(rabbit_conf, endpoint, 1.0)
    client = rpc.get_client(rabbit_conf, "compute", server="h1", timeout=4)
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.call(RequestContext(), "echo", value="lost")
    assert endpoint.calls == []


def test_call_sent_before_the_queue_exists_is_answered(
        rabbit_conf: cfg.ConfigOpts, late_server: Callable[..., None]) -> None:
    endpoint = Recorder("h1")
    late_server(rabbit_conf, endpoint, 1.0)
    client = rpc.reliable(rabbit_conf, rpc.get_client(rabbit_conf, "compute", timeout=10))
    assert client.call(RequestContext(), "echo", server="h1", value="kept") == "kept"
    assert [m for m, _c, _kw in endpoint.calls] == ["echo"]  # delivered once


def test_cast_sent_before_the_queue_exists_is_delivered(
        rabbit_conf: cfg.ConfigOpts, late_server: Callable[..., None]) -> None:
    endpoint = Recorder("h1")
    late_server(rabbit_conf, endpoint, 1.0)
    client = rpc.reliable(rabbit_conf, rpc.get_client(rabbit_conf, "compute"))
    client.cast(RequestContext(), "note", server="h1", value="kept")
    assert [(m, kw) for m, _c, kw in endpoint.wait_calls(1)] == [("note", {"value": "kept"})]


def test_no_receiver_within_the_window_is_a_delivery_failure(
        rabbit_conf: cfg.ConfigOpts) -> None:
    rabbit_conf.set_override("rpc_delivery_window", 0.5)
    client = rpc.reliable(rabbit_conf, rpc.get_client(rabbit_conf, "compute", timeout=10))
    with pytest.raises(oslo_messaging.MessageDeliveryFailure) as info:
        client.call(RequestContext(), "echo", server="nobody", value=1)
    assert "echo to compute on nobody: no queue took the message" in str(info.value)


class SlowOnce(Recorder):
    """Answers its first echo after the caller gave up, later ones at once."""

    def echo(self, ctxt: object, value: object) -> object:
        first = not self.calls
        result = super().echo(ctxt, value)
        if first:
            time.sleep(1.5)
        return result


def test_idempotent_call_is_sent_again_after_a_timeout(
        rabbit_conf: cfg.ConfigOpts,
        start_server: Callable[..., oslo_messaging.RPCServer]) -> None:
    again, once = SlowOnce("h1"), SlowOnce("h2")
    start_server(rabbit_conf, "compute", "h1", [again])
    start_server(rabbit_conf, "compute", "h2", [once])
    client = rpc.reliable(rabbit_conf, rpc.get_client(rabbit_conf, "compute", timeout=0.5))
    assert client.call(RequestContext(), "echo", server="h1", idempotent=True,
                       value="again") == "again"
    assert len(again.calls) == 2
    with pytest.raises(oslo_messaging.MessagingTimeout):  # not idempotent: sent once
        client.call(RequestContext(), "echo", server="h2", value="once")
    assert len(once.wait_calls(1)) == 1


def test_inproc_sends_once(conf: cfg.ConfigOpts) -> None:
    assert rpc.reliable(conf, rpc.get_client(conf, "compute")).window == 0.0
