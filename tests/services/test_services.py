"""The private test servers: they work, they are private, they bind where asked, and
stopping them leaves nothing running."""

from __future__ import annotations

import os
import socket

import kombu
import pytest
import sqlalchemy

from virtsdk.testing.services import start_postgres, start_rabbitmq


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_rabbit_url_is_a_private_working_vhost(rabbit, rabbit_url):
    other = rabbit.url(rabbit.new_vhost())
    assert other != rabbit_url
    url = rabbit_url.replace("rabbit://", "amqp://")
    with kombu.Connection(url) as conn:
        queue = kombu.Queue("probe", kombu.Exchange("probe"), "probe")
        producer = conn.Producer()
        producer.publish({"n": 1}, exchange=queue.exchange, routing_key="probe",
                         declare=[queue])
        assert rabbit.queue_depths(rabbit_url.rsplit("/", 1)[1]) == {"probe": 1}
        assert rabbit.queue_depths(other.rsplit("/", 1)[1]) == {}
        message = queue(conn.channel()).get(no_ack=True)
        assert message is not None and message.payload == {"n": 1}
    print(f"\nRabbitMQ node started in {rabbit.startup_seconds:.2f} s")


def test_postgres_url_is_an_empty_database(postgres, postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []
        conn.execute(sqlalchemy.text("CREATE TABLE t (n BIGINT)"))
        conn.execute(sqlalchemy.text("INSERT INTO t VALUES (5368709120)"))
        assert conn.execute(sqlalchemy.text("SELECT n FROM t")).scalar() == 5 * 1024**3
    engine.dispose()
    print(f"\nPostgreSQL cluster started in {postgres.startup_seconds:.2f} s")


@pytest.mark.parametrize("kind", ["rabbitmq", "postgresql"])
def test_extra_address_and_nothing_left_after_stop(kind):
    """Bound to an extra address (127.0.0.2 stands in for a lab bridge) as well as
    loopback; after stop() no process, port or file of it remains."""
    if kind == "rabbitmq":
        server = start_rabbitmq(bind=("127.0.0.2",))
        ports = [server.port, server.epmd_port]
    else:
        server = start_postgres(bind=("127.0.0.2",))
        ports = [server.port]
    try:
        assert _listening("127.0.0.1", server.port)
        assert _listening("127.0.0.2", server.port)
        if kind == "rabbitmq":  # Erlang distribution and epmd stay on loopback
            assert not _listening("127.0.0.2", server.epmd_port)
        else:
            engine = sqlalchemy.create_engine(server.url(host="127.0.0.2"))
            with engine.connect() as conn:
                assert conn.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
            engine.dispose()
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not any(_listening("127.0.0.1", p) for p in ports)
    assert not os.path.exists(server.base_dir)
