"""The ``inproc://`` driver: routing, isolation, lifecycle and broker-like encoding."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid
from collections import Counter

import oslo_messaging
import pytest

from virtsdk import rpc
from virtsdk.rpc import inproc

from .conftest import make_conf
from .endpoints import EVENTS, Journal, Recorder


def test_default_transport_is_inproc():
    conf = make_conf("fake://")
    conf.clear_override("transport_url")
    assert conf.transport_url == "inproc://"
    assert isinstance(rpc.get_transport(conf)._driver, inproc.InProcDriver)  # noqa: SLF001


def test_transport_is_cached_per_url(conf):
    assert rpc.get_transport(conf) is rpc.get_transport(conf)
    other = make_conf("inproc://")
    assert rpc.get_transport(other) is not rpc.get_transport(conf)


def test_call_targets_the_named_server(conf, start_server, ctxt):
    a, b = Recorder("a"), Recorder("b")
    start_server(conf, "compute", "a", [a])
    start_server(conf, "compute", "b", [b])
    client = rpc.get_client(conf, "compute", timeout=10)

    answers = [client.prepare(server="b").call(ctxt, "whoami") for _ in range(5)]

    assert answers == ["b"] * 5
    assert a.calls == []


def test_topic_calls_are_shared_between_the_servers_of_a_topic(conf, start_server, ctxt):
    start_server(conf, "scheduler", "s1", [Recorder("s1")])
    start_server(conf, "scheduler", "s2", [Recorder("s2")])
    client = rpc.get_client(conf, "scheduler", timeout=10)

    answers = Counter(client.call(ctxt, "whoami") for _ in range(20))

    assert sum(answers.values()) == 20
    assert set(answers) == {"s1", "s2"}


def test_fanout_reaches_every_server_and_a_plain_cast_only_one(conf, start_server, ctxt):
    journal = Journal()
    for i in range(3):
        start_server(conf, "compute", f"h{i}", [Recorder(f"h{i}", journal)])
    client = rpc.get_client(conf, "compute", timeout=10)

    client.prepare(fanout=True).cast(ctxt, "note", value="to-all")
    assert sorted(name for name, _m, _kw in journal.wait(3)) == ["h0", "h1", "h2"]

    client.cast(ctxt, "note", value="to-one")
    journal.wait(4)
    client.prepare(fanout=True).cast(ctxt, "note", value="marker")
    entries = journal.wait(7)
    values = Counter(kw["value"] for _n, _m, kw in entries)
    assert values == {"to-all": 3, "to-one": 1, "marker": 3}


def test_exchanges_and_virtual_hosts_are_isolated(conf, start_server, ctxt):
    start_server(conf, "compute", "h1", [Recorder("h1")])
    client = rpc.get_client(conf, "compute", server="h1", timeout=0.2)
    assert client.call(ctxt, "whoami") == "h1"

    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.prepare(exchange="elsewhere").call(ctxt, "whoami")
    other_vhost = make_conf("inproc://")
    with pytest.raises(oslo_messaging.MessagingTimeout):
        rpc.get_client(other_vhost, "compute", server="h1", timeout=0.2).call(ctxt, "whoami")


def test_stopped_server_keeps_its_queue_and_catches_up_after_restart(conf, ctxt):
    endpoint = Recorder("h1")
    server = rpc.get_server(conf, "compute", "h1", [endpoint])
    server.start()
    client = rpc.get_client(conf, "compute", server="h1", timeout=0.2)
    assert client.call(ctxt, "whoami") == "h1"
    rpc.stop_servers([server])

    client.cast(ctxt, "note", value="while-down")
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.call(ctxt, "whoami")
    assert len(endpoint.calls) == 1

    server.start()
    try:
        notes = [c for c in endpoint.wait_calls(3) if c[0] == "note"]
        assert [c[2] for c in notes] == [{"value": "while-down"}]
        assert client.prepare(timeout=10).call(ctxt, "whoami") == "h1"
    finally:
        rpc.stop_servers([server])


def test_server_wait_lets_in_flight_work_finish(conf, ctxt):
    name = f"inflight-{uuid.uuid4().hex}"
    EVENTS[name] = threading.Event()
    endpoint = Recorder("h1")
    server = rpc.get_server(conf, "compute", "h1", [endpoint])
    server.start()
    # get_server's servers use the standard library pool (prompt shutdown).
    assert isinstance(server._work_executor, concurrent.futures.ThreadPoolExecutor)  # noqa: SLF001
    try:
        rpc.get_client(conf, "compute", server="h1").cast(
            ctxt, "block_then_note", event_name=name
        )
        endpoint.wait_calls(1)
        server.stop()
        threading.Timer(0.1, EVENTS[name].set).start()
        server.wait()
    finally:
        EVENTS.pop(name).set()
    assert [c[0] for c in endpoint.calls] == ["block", "released"]


def test_slow_endpoint_times_out_and_its_late_reply_is_dropped(conf, start_server, ctxt):
    name = f"slow-{uuid.uuid4().hex}"
    EVENTS[name] = threading.Event()
    endpoint = Recorder("h1")
    start_server(conf, "compute", "h1", [endpoint])
    client = rpc.get_client(conf, "compute", server="h1")
    try:
        with pytest.raises(oslo_messaging.MessagingTimeout):
            client.prepare(timeout=0.2).call(ctxt, "block", event_name=name)
    finally:
        EVENTS.pop(name).set()
    # The late reply finds nobody waiting; the next call gets its own answer.
    assert client.prepare(timeout=10).call(ctxt, "echo", value=7) == 7


def test_call_monitor_times_out_without_heartbeats(conf, ctxt):
    client = rpc.get_client(conf, "compute", server="nobody", timeout=30)
    with pytest.raises(oslo_messaging.MessagingTimeout, match="no heartbeat"):
        client.prepare(call_monitor_timeout=0.2).call(ctxt, "whoami")


def test_heartbeats_keep_a_long_call_alive_past_the_monitor_timeout(
    conf, start_server, ctxt
):
    # oslo.messaging heartbeats at most once a second, so this test needs ~2.5 s.
    name = f"long-{uuid.uuid4().hex}"
    EVENTS[name] = threading.Event()
    start_server(conf, "compute", "h1", [Recorder("h1")])
    client = rpc.get_client(conf, "compute", server="h1", timeout=30)
    timer = threading.Timer(2.5, EVENTS[name].set)
    timer.start()
    try:
        result = client.prepare(call_monitor_timeout=2).call(ctxt, "block", event_name=name)
    finally:
        timer.cancel()
        EVENTS.pop(name).set()
    assert result == "unblocked"


def test_messages_cross_as_json_not_as_python_objects(conf, ctxt):
    """Without virtsdk's serializer the driver alone must still encode everything."""
    received: list[object] = []

    class Raw:
        def keep(self, ctxt: dict, value: object) -> object:
            received.append(value)
            value.append("added-by-server")  # type: ignore[attr-defined]
            return value

    transport = rpc.get_transport(conf)
    server = rpc.prompt_stop(oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic="raw", server="h1"), [Raw()]
    ))
    server.start()
    try:
        client = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic="raw", server="h1"), timeout=10
        )
        sent = ["a", ("b", 1)]
        result = client.call({}, "keep", value=sent)
    finally:
        rpc.stop_servers([server])

    assert sent == ["a", ("b", 1)]  # the caller's object was never shared
    assert received == [["a", ["b", 1], "added-by-server"]]  # a tuple became a list
    assert result == ["a", ["b", 1], "added-by-server"]


def test_unencodable_argument_fails_before_anything_is_sent(conf, start_server, ctxt):
    endpoint = Recorder("h1")
    start_server(conf, "compute", "h1", [endpoint])
    # With virtsdk's serializer: refused while serialising the arguments.
    client = rpc.get_client(conf, "compute", server="h1", timeout=1)
    with pytest.raises(TypeError, match="cannot serialise"):
        client.call(ctxt, "echo", value=threading.Lock())
    # With no serializer at all: the driver's own JSON encoding refuses it.
    raw = oslo_messaging.get_rpc_client(
        rpc.get_transport(conf), oslo_messaging.Target(topic="compute", server="h1"),
        timeout=1,
    )
    with pytest.raises((TypeError, ValueError)):
        raw.cast({}, "echo", value=object())
    assert client.call(ctxt, "echo", value="still fine") == "still fine"
    assert [c[2] for c in endpoint.calls] == [{"value": "still fine"}]


def test_unencodable_result_comes_back_as_an_error_not_a_timeout(conf, start_server, ctxt):
    start_server(conf, "compute", "h1", [Recorder("h1")])
    client = rpc.get_client(conf, "compute", server="h1", timeout=10)
    with pytest.raises(TypeError, match="cannot serialise"):
        client.call(ctxt, "unencodable_result")


def test_driver_refuses_an_unencodable_reply_and_says_so(conf, ctxt):
    """No serializer on either side: the driver's own reply encoding fails, and the
    caller gets that error instead of waiting for its timeout."""
    transport = rpc.get_transport(conf)
    target = oslo_messaging.Target(topic="raw", server="h1")
    server = rpc.prompt_stop(oslo_messaging.get_rpc_server(transport, target, [Recorder("h1")]))
    server.start()
    try:
        client = oslo_messaging.get_rpc_client(transport, target, timeout=30)
        with pytest.raises((TypeError, ValueError)):
            client.call({}, "unencodable_result")
    finally:
        rpc.stop_servers([server])


class _Tally:
    """Notification endpoint; several listeners may share one tally."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, object]] = []
        self.cond = threading.Condition()

    def endpoint(self, name: str) -> object:
        tally = self

        class _Endpoint:
            def info(self, ctxt, publisher_id, event_type, payload, metadata):
                tally.add(name, event_type, payload)

            def warn(self, ctxt, publisher_id, event_type, payload, metadata):
                tally.add(name, event_type, payload)

        return _Endpoint()

    def add(self, name: str, event_type: str, payload: object) -> None:
        with self.cond:
            self.seen.append((name, event_type, payload))
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, str, object]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.seen) >= count, timeout)
            return list(self.seen)


def _listen(conf, tally: _Tally, name: str, pool: str | None):
    listener = rpc.prompt_stop(oslo_messaging.get_notification_listener(
        rpc.get_notification_transport(conf),
        [oslo_messaging.Target(topic="notifications")],
        [tally.endpoint(name)],
        serializer=rpc.VirtObjectSerializer(),
        pool=pool,
    ))
    listener.start()
    return listener


def test_notification_pools_each_get_a_copy_and_share_within_a_pool(conf, ctxt):
    shared, separate = _Tally(), _Tally()
    listeners = [
        _listen(conf, shared, "first", "audit"),
        _listen(conf, shared, "second", "audit"),
        _listen(conf, separate, "other", "metrics"),
    ]
    try:
        notifier = rpc.get_notifier(conf, "compute.h1")
        for i in range(10):
            notifier.info(ctxt, "instance.exists", {"i": i})
        pool_seen = shared.wait(10)
        other_seen = separate.wait(10)
    finally:
        rpc.stop_servers(listeners)

    assert sorted(p["i"] for _n, _e, p in pool_seen) == list(range(10))
    assert sorted(p["i"] for _n, _e, p in other_seen) == list(range(10))
    assert len(shared.seen) == 10  # each notification went to one member of the pool


def test_notifications_sent_before_any_listener_wait_in_the_default_queue(conf, ctxt):
    """Like a broker's notifier, the topic's default queue is declared on send."""
    notifier = rpc.get_notifier(conf, "compute.h1")
    notifier.warn(ctxt, "early.bird", {"n": 1})

    fresh_pool, default_pool = _Tally(), _Tally()
    listeners = [_listen(conf, fresh_pool, "fresh", "new-pool")]
    try:
        notifier.warn(ctxt, "late", {})
        assert [e for _n, e, _p in fresh_pool.wait(1)] == ["late"]
        listeners.append(_listen(conf, default_pool, "default", None))
        assert [e for _n, e, _p in default_pool.wait(2)] == ["early.bird", "late"]
    finally:
        rpc.stop_servers(listeners)


def test_collector_reports_what_did_arrive_when_waiting_fails(conf, ctxt):
    from virtsdk.rpc.notifications import NotificationCollector

    with NotificationCollector(conf) as collector:
        rpc.get_notifier(conf, "compute.h1").info(ctxt, "something.else", {})
        collector.wait_for("something.else")
        with pytest.raises(TimeoutError, match="something.else"):
            collector.wait_for("never.sent", timeout=0.1)
        assert collector.event_types() == ["something.else"]


def test_concurrent_callers_each_get_their_own_reply(conf, start_server, ctxt):
    start_server(conf, "compute", "h1", [Recorder("h1")])
    start_server(conf, "compute", "h2", [Recorder("h2")])
    client = rpc.get_client(conf, "compute", timeout=30)
    mismatches: list[tuple[object, object]] = []
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            for i in range(50):
                value = {"caller": n, "i": i}
                result = client.call(ctxt, "echo", value=value)
                if result != value:
                    mismatches.append((value, result))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert mismatches == []
