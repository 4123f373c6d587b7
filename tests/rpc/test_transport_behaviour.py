"""Behaviour every transport must share, run on ``inproc://`` and on oslo's ``fake://``.

The same virtsdk code (``get_client``/``get_server``/``get_notifier`` and the
serializer) runs on both, which is what lets a deployment swap the transport by
configuration only.  Kept few: each ``fake://`` call costs about 50 ms.
"""

from __future__ import annotations

import oslo_messaging
import pytest

from virtsdk import exceptions, rpc
from virtsdk.context import RequestContext
from virtsdk.objects import Flavor, Instance, Migration
from virtsdk.rpc.notifications import NotificationCollector
from virtsdk.states import MigrationType, TaskState, VMState

from .endpoints import Recorder


def test_call_round_trips_objects_and_context(any_conf, start_server, ctxt):
    endpoint = Recorder("h1")
    start_server(any_conf, "compute", "h1", [endpoint])
    flavor = Flavor("m1.small", memory_mb=512, vcpus=1, root_gb=1)
    instance = Instance(
        name="vm1", flavor=flavor, host="h1", vm_state=VMState.ACTIVE,
        task_state=TaskState.MIGRATING,
    )
    migration = Migration(instance.uuid, "h1", MigrationType.LIVE, dest_host="h2")
    value = {"instance": instance, "migrations": [migration], "n": 3}

    client = rpc.get_client(any_conf, "compute", timeout=10)
    result = client.prepare(server="h1").call(ctxt, "echo", value=value)

    assert result == value
    assert isinstance(result["instance"].task_state, TaskState)
    (method, seen_ctxt, kwargs), = endpoint.calls
    assert method == "echo"
    assert isinstance(seen_ctxt, RequestContext)
    assert seen_ctxt == ctxt
    assert kwargs["value"]["migrations"][0] == migration


def test_cast_is_delivered_without_a_reply(any_conf, start_server, ctxt):
    endpoint = Recorder("h1")
    start_server(any_conf, "compute", "h1", [endpoint])
    client = rpc.get_client(any_conf, "compute")

    assert client.prepare(server="h1").cast(ctxt, "note", value="hello") is None

    calls = endpoint.wait_calls(1)
    assert [(m, kw) for m, _c, kw in calls] == [("note", {"value": "hello"})]


def test_call_without_a_server_times_out(any_conf, ctxt):
    client = rpc.get_client(any_conf, "compute", timeout=0.2)
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.prepare(server="nobody-home").call(ctxt, "whoami")


def test_virtsdk_error_with_several_constructor_arguments_comes_back_as_itself(
    any_conf, start_server, ctxt
):
    start_server(any_conf, "compute", "h1", [Recorder("h1")])
    client = rpc.get_client(any_conf, "compute", server="h1", timeout=10)

    with pytest.raises(exceptions.InstanceNotFound) as info:
        client.call(ctxt, "raise_error", kind="instance_not_found")

    assert info.value.instance == "inst-1"
    assert str(info.value).startswith("instance 'inst-1' not found on host 'hostB'")


def test_notifications_reach_a_collector(any_conf, ctxt):
    flavor = Flavor("m1.small", memory_mb=512, vcpus=1, root_gb=1)
    with NotificationCollector(any_conf) as collector:
        notifier = rpc.get_notifier(any_conf, "compute.h1")
        notifier.info(ctxt, "live_migration.pre.start", {"flavor": flavor})
        notifier.error(ctxt, "live_migration.pre.error", {"reason": "disk full"})
        (start,) = collector.wait_for("live_migration.pre.start")
        (error,) = collector.wait_for("live_migration.pre.error")

    assert start.publisher_id == "compute.h1"
    assert start.priority == "info"
    assert start.payload == {"flavor": flavor}
    assert start.context == ctxt
    assert error.priority == "error"
    assert error.payload == {"reason": "disk full"}


class _RecordingSerializer(rpc.VirtObjectSerializer):
    """Keeps the context exactly as the transport delivered it."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[dict] = []

    def deserialize_context(self, ctxt):
        self.delivered.append(dict(ctxt))
        return super().deserialize_context(ctxt)


def test_serializer_rebuilds_the_context_the_driver_really_delivers(any_conf, ctxt):
    """The AMQP driver delivers the context with keys of its own next to the
    serialized ones (``client_timeout``); the endpoint still gets the RequestContext."""
    endpoint = Recorder("h1")
    serializer = _RecordingSerializer()
    server = rpc.prompt_stop(oslo_messaging.get_rpc_server(
        rpc.get_transport(any_conf),
        oslo_messaging.Target(topic=rpc.prefixed_topic(any_conf, "compute"), server="h1"),
        [endpoint], serializer=serializer))
    server.start()
    try:
        client = rpc.get_client(any_conf, "compute", server="h1", timeout=10)
        assert client.call(ctxt, "echo", value=1) == 1
        client.cast(ctxt, "note", value="x")
        calls = endpoint.wait_calls(2)
    finally:
        rpc.stop_servers([server])
    assert [c[1] for c in calls] == [ctxt, ctxt]
    assert all(isinstance(c[1], RequestContext) for c in calls)
    sent = rpc.VirtObjectSerializer().serialize_context(ctxt)
    for delivered in serializer.delivered:
        assert {k: delivered[k] for k in sent} == sent
    if any_conf.transport_url.startswith("rabbit"):
        assert "client_timeout" in serializer.delivered[0]  # the driver's own key
