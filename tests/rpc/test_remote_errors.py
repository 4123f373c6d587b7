"""Errors raised by an endpoint reach the caller as the same class, with their data."""

from __future__ import annotations

import logging
import sys
import types

import oslo_messaging
import pytest

from virtsdk import exceptions, rpc
from virtsdk.context import RequestContext

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
        ("driver_not_found", exceptions.PluginNotFound,
         {"name": "nope", "installed": ["fake", "libvirt"]}),
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
    # The caller sees the error's own message; the traceback stays in the server's log.
    assert str(err) == str(original)
    assert err.request_id == ctxt.request_id


def test_rollback_classification_survives_the_trip(client, ctxt):
    """The manager decides rollback vs ERROR by class; that must hold after RPC."""
    with pytest.raises(exceptions.RollbackError):
        client.call(ctxt, "raise_error", kind="destination_disk_exists")


def test_builtin_errors_come_back_as_themselves(client, ctxt):
    with pytest.raises(KeyError) as info:
        client.call(ctxt, "raise_error", kind="key_error")
    assert "Traceback" not in str(info.value) and ".py" not in str(info.value)


def test_errors_from_other_modules_become_remote_error(client, ctxt):
    with pytest.raises(oslo_messaging.RemoteError) as info:
        client.call(ctxt, "raise_error", kind="local_only")
    assert info.value.exc_type == "LocalOnlyError"
    assert "private" in info.value.value
    assert "Traceback" not in str(info.value) and ".py" not in str(info.value)


def test_error_rebuilt_locally_keeps_constructor_arguments():
    """The hook oslo.messaging uses, exercised without a transport."""
    err = exceptions.InstanceInvalidState("vm", "task_state", None, "resize")
    rebuilt = exceptions.InstanceInvalidState("the message", **err.kwargs)
    assert str(rebuilt) == str(err)
    assert rebuilt.state is None
    plain = exceptions.Invalid("bad flavor")
    assert str(exceptions.Invalid("x", **plain.kwargs)) == "bad flavor"


class _DriverPreCheckError(exceptions.MigrationPreCheckError):
    """A driver's own error with its own constructor (lives in a virtsdk_* module)."""

    def __init__(self, host: str, free_mb: int) -> None:
        self.host = host
        self.free_mb = free_mb
        super().__init__(f"host {host} has only {free_mb} MiB free")


class _OutsiderError(exceptions.VirtSDKError):
    pass


@pytest.fixture
def foreign_modules():
    """Two importable throw-away modules: one named like a driver package, one not."""
    made = {}
    for name, cls in (("virtsdk_rpctest_driver.errors", _DriverPreCheckError),
                      ("rpctest_outsider.errors", _OutsiderError)):
        package = types.ModuleType(name.split(".")[0])
        package.__path__ = []
        module = types.ModuleType(name)
        copy = type(cls.__name__, (cls,), {"__module__": name})
        setattr(module, cls.__name__, copy)
        sys.modules[package.__name__] = package
        sys.modules[name] = module
        made[name] = copy
    yield made
    for name in made:
        del sys.modules[name]
        del sys.modules[name.split(".")[0]]


def test_driver_package_errors_come_back_as_themselves(client, ctxt, foreign_modules):
    driver_error = foreign_modules["virtsdk_rpctest_driver.errors"]
    ERRORS["driver_error"] = lambda: driver_error("h2", 12)
    try:
        with pytest.raises(driver_error) as info:
            client.call(ctxt, "raise_error", kind="driver_error")
    finally:
        del ERRORS["driver_error"]
    assert isinstance(info.value, exceptions.RollbackError)
    assert (info.value.host, info.value.free_mb) == ("h2", 12)


def test_errors_of_other_packages_are_not_imported(client, ctxt, foreign_modules):
    outsider = foreign_modules["rpctest_outsider.errors"]
    ERRORS["outsider"] = lambda: outsider("no")
    try:
        with pytest.raises(oslo_messaging.RemoteError) as info:
            client.call(ctxt, "raise_error", kind="outsider")
    finally:
        del ERRORS["outsider"]
    assert info.value.exc_type == "_OutsiderError"


@pytest.mark.parametrize("kind", ["instance_not_found", "key_error", "local_only"])
def test_the_server_logs_the_traceback_under_the_request_id(any_conf, start_server, ctxt,
                                                           caplog, kind):
    """On any transport: the caller's error is short, the server's log has the rest."""
    start_server(any_conf, "compute", "h1", [Recorder("h1")])
    caller = rpc.get_client(any_conf, "compute", server="h1", timeout=10)
    with caplog.at_level("WARNING", logger="virtsdk.rpc.remote_errors"), \
            pytest.raises(Exception) as info:
        caller.call(ctxt, "raise_error", kind=kind)
    assert "Traceback" not in str(info.value) and 'File "' not in str(info.value)
    if isinstance(info.value, exceptions.VirtSDKError):
        assert info.value.request_id == ctxt.request_id
    else:  # rebuilt from text: the id is in the message
        assert ctxt.request_id in str(info.value) or ctxt.request_id in str(
            getattr(info.value, "__notes__", ""))
    logged = [logging.Formatter().format(r) for r in caplog.records
              if ctxt.request_id in r.getMessage()]
    assert len(logged) == 1
    assert "compute on h1: raise_error" in logged[0]
    assert "Traceback (most recent call last)" in logged[0]
    assert "endpoints.py" in logged[0]
    assert ctxt.request_id in caplog.text and "Traceback" in caplog.text


def test_a_hostile_request_id_is_not_echoed(conf, start_server, caplog):
    start_server(conf, "compute", "h1", [Recorder("h1")])
    caller = rpc.get_client(conf, "compute", server="h1", timeout=10)
    bad = RequestContext(request_id="req-1\nFAKE LOG LINE " + "x" * 300)
    with pytest.raises(exceptions.InstanceNotFound) as info:
        caller.call(bad, "raise_error", kind="instance_not_found")
    assert info.value.request_id.startswith("req-")
    assert "\n" not in info.value.request_id and len(info.value.request_id) <= 64
