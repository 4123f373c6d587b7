"""Errors raised by an endpoint reach the caller as the same class, with their data."""

from __future__ import annotations

import oslo_messaging
import pytest

from virtsdk import exceptions, rpc

from .conftest import make_conf
from .endpoints import ERRORS, Recorder


@pytest.fixture(scope="module")
def client():
    """One server for the whole module: stopping a server costs about a second."""
    conf = make_conf("inproc://")
    server = rpc.get_server(conf, "compute", "h1", [Recorder("h1")])
    server.start()
    yield rpc.get_client(conf, "compute", server="h1", timeout=10)
    rpc.stop_servers([server])


@pytest.mark.parametrize(
    ("kind", "cls", "attrs"),
    [
        ("instance_not_found", exceptions.InstanceNotFound, {"instance": "inst-1"}),
        ("driver_not_found", exceptions.DriverNotFound,
         {"name": "nope", "available": ["fake", "libvirt"]}),
        ("invalid_state", exceptions.InstanceInvalidState, {"state": "stopped"}),
        ("unexpected_task_state", exceptions.UnexpectedTaskState,
         {"expected": "migrating", "actual": None}),
        ("destination_disk_exists", exceptions.DestinationDiskExists, {}),
        ("not_supported", exceptions.NotSupported,
         {"driver": "fake", "feature": "post-copy"}),
    ],
)
def test_virtsdk_errors_come_back_as_their_own_class(client, ctxt, kind, cls, attrs):
    original = ERRORS[kind]()

    with pytest.raises(cls) as info:
        client.call(ctxt, "raise_error", kind=kind)

    err = info.value
    assert isinstance(err, exceptions.VirtSDKError)
    assert type(err).__mro__[1] is cls or type(err) is cls
    for name, value in attrs.items():
        assert getattr(err, name) == value
    # The caller sees the original message first, then the remote traceback.
    assert str(err).startswith(str(original))


def test_rollback_classification_survives_the_trip(client, ctxt):
    """The manager decides rollback vs ERROR by class; that must hold after RPC."""
    with pytest.raises(exceptions.RollbackError):
        client.call(ctxt, "raise_error", kind="destination_disk_exists")


def test_builtin_errors_come_back_as_themselves(client, ctxt):
    with pytest.raises(KeyError):
        client.call(ctxt, "raise_error", kind="key_error")


def test_errors_from_other_modules_become_remote_error(client, ctxt):
    with pytest.raises(oslo_messaging.RemoteError) as info:
        client.call(ctxt, "raise_error", kind="local_only")
    assert info.value.exc_type == "LocalOnlyError"
    assert "private" in info.value.value


def test_error_rebuilt_locally_keeps_constructor_arguments():
    """The hook oslo.messaging uses, exercised without a transport."""
    err = exceptions.InstanceInvalidState("vm", "task_state", None, "resize")
    rebuilt = exceptions.InstanceInvalidState("the message", **err.kwargs)
    assert str(rebuilt) == str(err)
    assert rebuilt.state is None
    plain = exceptions.Invalid("bad flavor")
    assert str(exceptions.Invalid("x", **plain.kwargs)) == "bad flavor"
