"""Real outages of the real servers: a restarted PostgreSQL and a stopped-then-started
RabbitMQ node; virtsdk's database layer and RPC carry on afterwards."""

from __future__ import annotations

import signal
import threading
import time

import oslo_messaging
import pytest
from oslo_config import cfg

from tests.rpc.endpoints import Recorder
from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.db import Database
from virtsdk.db.migration import db_sync
from virtsdk.objects import Flavor
from virtsdk.testing.services import free_port, start_postgres


def test_database_carries_on_after_postgres_restarts(caplog):
    """Pooled connections cut by a restart are replaced; a write while the server is
    down (it comes back 2 s later) waits for it; a server never reached fails at once."""
    cluster = start_postgres()
    try:
        url = cluster.create_database()
        db_sync(url)
        db = Database(url)
        db.flavor_create(Flavor("before", 256, 1, 1))
        cluster.restart()  # every pooled connection is cut
        db.flavor_create(Flavor("after", 256, 1, 1))
        cluster.process.send_signal(signal.SIGINT)  # fast shutdown: the server is gone
        cluster.process.wait(30)
        back = threading.Timer(2.0, cluster.restart)
        back.start()
        try:
            db.flavor_create(Flavor("during", 256, 1, 1))
        finally:
            back.join()
        assert [f.name for f in db.flavor_list()] == ["before", "after", "during"]
        assert "retrying" in caplog.text  # the write did meet the outage
        db.dispose()
    finally:
        cluster.stop()
    caplog.clear()
    never = Database(f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/none")
    with pytest.raises(Exception, match="connect"):
        never.flavor_list()
    assert "retrying" not in caplog.text  # never reached: failed without a retry
    never.dispose()


def _call_until_answered(client, ctxt, deadline_s: float = 120.0):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return client.call(ctxt, "echo", value="again")
        except oslo_messaging.MessagingTimeout:
            if time.monotonic() > deadline:
                raise


def test_rpc_carries_on_after_the_broker_restarts(rabbit, rabbit_url):
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([])
    conf.set_override("transport_url", rabbit_url)
    server = rpc.get_server(conf, "compute", "h1", [Recorder("h1")])
    server.start()
    try:
        client = rpc.get_client(conf, "compute", server="h1", timeout=5)
        ctxt = RequestContext()
        assert client.call(ctxt, "echo", value="first") == "first"
        rabbit.stop_broker()
        with pytest.raises(oslo_messaging.MessageDeliveryFailure):
            rpc.get_client(conf, "compute", server="h1", timeout=2).prepare(
                retry=0).call(ctxt, "echo", value="lost")
        rabbit.start_broker()
        assert _call_until_answered(client, ctxt) == "again"
    finally:
        rpc.stop_servers([server])
        rpc.cleanup([conf])

