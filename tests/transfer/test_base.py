"""The transport plugin interface: loading, validation, choosing a transport."""

from __future__ import annotations

import pytest

from virtsdk.conf.opts import list_opts
from virtsdk.exceptions import Invalid, InvalidHostname, PluginNotFound, UnsafePath
from virtsdk.transfer import base
from virtsdk.transfer.local import LocalTransport


def test_all_declared_transports_load(conf):
    for name in ("local", "stream", "rsync", "scp"):
        transport = base.load_transport(name, conf)
        assert isinstance(transport, base.DiskTransport)
        assert transport.name == name


def test_unknown_transport_lists_what_is_installed(conf):
    with pytest.raises(PluginNotFound) as err:
        base.load_transport("carrier-pigeon", conf)
    assert "carrier-pigeon" in str(err.value)
    assert "local" in str(err.value) and "stream" in str(err.value)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "", "a\0b",
                                  ".virtsdk-transfer-1.json", "d/.virtsdk-x"])
def test_unsafe_names_refused(name, tmp_path):
    with pytest.raises(UnsafePath):
        base.confine_name(str(tmp_path), name)
    if name.startswith("/") or not name:
        return
    with pytest.raises(Invalid):
        base.SendFile("/src/disk", name)


def test_symlink_escape_refused(tmp_path):
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        base.confine_name(str(tmp_path / "dest"), "link/disk")


def test_endpoint_and_sendfile_validation():
    with pytest.raises(InvalidHostname):
        base.HostEndpoint("bad host;rm -rf")
    with pytest.raises(Invalid):
        base.HostEndpoint("10.0.0.1", exec_prefix=["ip", ""])
    with pytest.raises(Invalid):
        base.SendFile("relative/disk", "disk")


def test_progress_meter_is_monotonic_and_bounded():
    seen = []
    meter = base.ProgressMeter(seen.append, total=100, interval=0)
    for n in (10, -5, 50, 70):
        meter.add(n)
    meter.finish()
    done = [p.bytes_done for p in seen]
    assert done == sorted(done)
    assert done[-1] == 100 and max(done) == 100


def test_choose_transport(conf, tmp_path):
    assert base.choose_transport(conf) == "stream"
    local = LocalTransport(conf)
    ticket = local.prepare_receive(str(tmp_path / "d"), base.HostEndpoint("127.0.0.1"))
    ticket["transport"] = "stream"
    assert base.choose_transport(conf, ticket) == "stream"  # no probe: not shared
    base.write_probe(ticket)
    assert base.choose_transport(conf, ticket) == "local"
    base.remove_probe(ticket)
    conf.set_override("transport", "scp", group="disk_transfer")
    assert base.choose_transport(conf, ticket) == "scp"


def test_results_cross_rpc():
    result = base.TransferResult("stream", [base.SentFile("disk", 10, 4, 5, "sha256:x", 0.1)])
    again = base.TransferResult.from_primitive(result.to_primitive())
    assert again == result and again.bytes_on_wire == 5


def test_all_options_listed_for_the_config_generator():
    groups = dict(list_opts())
    assert {"disk_transfer", "transport_local", "transport_stream",
            "transport_ssh"} <= set(groups)
    assert "compression" in {o.name for o in groups["transport_stream"]}
