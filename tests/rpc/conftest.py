"""Fixtures for the RPC tests: a fresh configuration and broker per test.

``inproc://`` tests get their own virtual host, so queues never leak between tests;
``fake://`` (oslo.messaging's own in-memory driver, ~50 ms per call) and ``rabbit://``
(a real private RabbitMQ node, a fresh virtual host per test) are used only by the few
behavioural tests parametrised over every transport.  Notifications are on here
(``messagingv2``; virtsdk's default is off).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import oslo_messaging
import pytest
from oslo_config import cfg

from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.rpc import inproc_broker


def make_conf(url: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([])
    if url == "inproc://":
        url = f"inproc:///test-{uuid.uuid4().hex}"
    conf.set_override("transport_url", url)
    conf.set_override("driver", ["messagingv2"], group="oslo_messaging_notifications")
    return conf


@pytest.fixture(autouse=True)
def _drop_transports() -> Iterator[None]:
    yield
    rpc.cleanup()
    inproc_broker.reset_brokers()  # each test had its own virtual host


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    """A configuration on a private ``inproc://`` virtual host."""
    return make_conf("inproc://")


@pytest.fixture(params=["inproc://", "fake://", "rabbit://"])
def any_conf(request: pytest.FixtureRequest) -> cfg.ConfigOpts:
    """The same test on virtsdk's transport, on oslo.messaging's own ``fake://`` and
    on a real RabbitMQ node."""
    if request.param == "rabbit://":
        return make_conf(request.getfixturevalue("rabbit_url"))
    return make_conf(request.param)


@pytest.fixture
def start_server() -> Iterator[Callable[..., oslo_messaging.RPCServer]]:
    """Start RPC servers for a test and stop them all at its end."""
    servers: list[oslo_messaging.RPCServer] = []

    def start(
        conf: cfg.ConfigOpts, topic: str, host: str, endpoints: list[object]
    ) -> oslo_messaging.RPCServer:
        server = rpc.get_server(conf, topic, host, endpoints)
        server.start()
        servers.append(server)
        return server

    yield start
    rpc.stop_servers(servers)


@pytest.fixture
def ctxt() -> RequestContext:
    return RequestContext(user_id="alice", project_id="p1", is_admin=False)
