"""RPC round-trip latency: virtsdk's ``inproc://`` next to oslo.messaging's ``fake://``.

Both run the same client/server code (:mod:`virtsdk.rpc`, the virtsdk serializer, a
threading RPC server); only ``transport_url`` differs.  ``fake://`` polls its queues
every 50 ms, ``inproc://`` wakes the consumer on a condition variable, so the ratio
is what the in-process transport buys every test and demo that crosses RPC.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import median_us, report
from oslo_config import cfg

from virtsdk import rpc
from virtsdk.context import RequestContext
from virtsdk.objects import Flavor, Instance
from virtsdk.states import TaskState, VMState

FAKE_ROUNDS = 20
INPROC_ROUNDS = 2000


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


def _instance() -> Instance:
    flavor = Flavor("m1.small", memory_mb=512, vcpus=1, root_gb=1)
    return Instance(name="vm1", flavor=flavor, host="h1", vm_state=VMState.ACTIVE,
                    task_state=TaskState.MIGRATING)


@pytest.mark.benchmark(group="rpc-call")
def test_call_inproc(benchmark, inproc_call):
    result = benchmark.pedantic(inproc_call, args=("ping",), rounds=INPROC_ROUNDS,
                                warmup_rounds=50)
    assert result == "ping"


@pytest.mark.benchmark(group="rpc-call")
def test_call_fake(benchmark, fake_call):
    result = benchmark.pedantic(fake_call, args=("ping",), rounds=FAKE_ROUNDS,
                                warmup_rounds=1)
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
