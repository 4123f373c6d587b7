"""RPC round-trip latency: virtsdk's ``inproc://`` next to oslo.messaging's ``fake://``
and a real RabbitMQ node (``rabbit://``).

All run the same client/server code (:mod:`virtsdk.rpc`, the virtsdk serializer, a
threading RPC server); only ``transport_url`` differs.  ``fake://`` polls its queues
every 50 ms, ``inproc://`` wakes the consumer on a condition variable, so that ratio
is what the in-process transport buys every test and demo that crosses RPC.  The
RabbitMQ node is a private one on loopback started for this module
(:mod:`virtsdk.testing.services`); its ratio is what leaving one process costs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oslo_config import cfg

from benchmarks.measure import median_us, report
from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.objects import Flavor, Instance
from virtsdk.states import TaskState, VMState
from virtsdk.testing.services import ServiceUnavailable, start_rabbitmq

FAKE_ROUNDS = 20
INPROC_ROUNDS = 2000
RABBIT_ROUNDS = 500


class Echo:
    def echo(self, ctxt: Any, value: Any) -> Any:
        return value


def _round_trip(url: str) -> Iterator[Callable[[Any], Any]]:
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([])
    conf.set_override("transport_url", url)
    topic = f"bench-{uuid.uuid4().hex}"
    server = rpc.get_server(conf, topic, "h1", [Echo()])
    server.start()
    client = rpc.get_client(conf, topic, server="h1", timeout=30)
    ctxt = RequestContext()
    try:
        yield lambda value: client.call(ctxt, "echo", value=value)
    finally:
        rpc.stop_servers([server])
        rpc.cleanup()


@pytest.fixture(scope="module")
def inproc_call() -> Iterator[Callable[[Any], Any]]:
    yield from _round_trip(f"inproc:///bench-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def fake_call() -> Iterator[Callable[[Any], Any]]:
    yield from _round_trip("fake://")


@pytest.fixture(scope="module")
def rabbit_call() -> Iterator[Callable[[Any], Any]]:
    try:
        node = start_rabbitmq()
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield from _round_trip(node.url(node.new_vhost()))
    finally:
        node.stop()


def _instance() -> Instance:
    flavor = Flavor("m1.small", memory_mb=512, vcpus=1, root_gb=1)
    return Instance(name="vm1", flavor=flavor, host="h1", vm_state=VMState.ACTIVE,
                    task_state=TaskState.MIGRATING)


#: transport -> (rounds, warm-up rounds)
ROUNDS = {"inproc": (INPROC_ROUNDS, 50), "fake": (FAKE_ROUNDS, 1),
          "rabbit": (RABBIT_ROUNDS, 20)}


@pytest.mark.benchmark(group="rpc-call")
@pytest.mark.parametrize("transport", list(ROUNDS))
def test_call(benchmark, request, transport):
    call = request.getfixturevalue(f"{transport}_call")
    rounds, warmup = ROUNDS[transport]
    result = benchmark.pedantic(call, args=("ping",), rounds=rounds, warmup_rounds=warmup)
    assert result == "ping"


@pytest.mark.benchmark(group="rpc-call")
def test_call_inproc_with_instance_payload(benchmark, inproc_call):
    instance = _instance()
    result = benchmark.pedantic(inproc_call, args=(instance,), rounds=INPROC_ROUNDS,
                                warmup_rounds=50)
    assert result == instance


@pytest.mark.benchmark(group="rpc-ratio")
def test_call_ratio_fake_over_inproc(benchmark, inproc_call, fake_call):
    """Median µs per round-trip ``call`` on each transport, and their ratio."""
    fake_us = median_us(lambda: fake_call("ping"), FAKE_ROUNDS)
    benchmark.pedantic(inproc_call, args=("ping",), rounds=INPROC_ROUNDS, warmup_rounds=50)
    inproc_us = benchmark.stats.stats.median * 1e6
    report(benchmark, "rpc call round trip (median)", inproc_us=inproc_us,
           fake_us=fake_us, fake_over_inproc=fake_us / inproc_us)
    assert inproc_us < fake_us


@pytest.mark.benchmark(group="rpc-ratio")
def test_call_ratio_rabbit_over_inproc(benchmark, inproc_call, rabbit_call):
    """Median µs per round-trip ``call`` on RabbitMQ and on inproc, and their ratio
    (plain string and an Instance payload)."""
    instance = _instance()
    inproc_us = median_us(lambda: inproc_call("ping"), INPROC_ROUNDS, warmup=50)
    inproc_obj_us = median_us(lambda: inproc_call(instance), INPROC_ROUNDS, warmup=50)
    rabbit_obj_us = median_us(lambda: rabbit_call(instance), RABBIT_ROUNDS, warmup=20)
    benchmark.pedantic(rabbit_call, args=("ping",), rounds=RABBIT_ROUNDS, warmup_rounds=20)
    rabbit_us = benchmark.stats.stats.median * 1e6
    report(benchmark, "rpc call round trip (median)", inproc_us=inproc_us,
           rabbit_us=rabbit_us, rabbit_over_inproc=rabbit_us / inproc_us,
           inproc_instance_us=inproc_obj_us, rabbit_instance_us=rabbit_obj_us,
           rabbit_over_inproc_instance=rabbit_obj_us / inproc_obj_us)
