"""Options, and the promise that the transport is a configuration choice only."""

from __future__ import annotations

import pathlib
import re

import oslo_messaging
from oslo_config import cfg

import virtsdk
from virtsdk import conf as virtsdk_conf
from virtsdk import rpc
from virtsdk.context import RequestContext


def test_register_all_gives_virtsdk_messaging_defaults():
    conf = virtsdk_conf.register_all(cfg.ConfigOpts())
    conf([])
    assert conf.transport_url == "inproc://"
    assert conf.control_exchange == "virtsdk"
    assert conf.oslo_messaging_notifications.driver == []  # notifications off
    assert conf.rpc_topic_prefix == ""


def test_config_file_overrides_the_transport(tmp_path):
    path = tmp_path / "virtsdk.conf"
    path.write_text("[DEFAULT]\ntransport_url = rabbit://u:p@mq.example:5672/\n")
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf(["--config-file", str(path)])
    assert conf.transport_url == "rabbit://u:p@mq.example:5672/"


def test_list_opts_shows_virtsdk_defaults_without_touching_oslo_options():
    groups = dict(rpc.list_opts())
    defaults = {opt.name: opt.default for opt in groups[None]}
    assert defaults["transport_url"] == "inproc://"
    assert defaults["control_exchange"] == "virtsdk"
    notif = {opt.name: opt.default for opt in groups["oslo_messaging_notifications"]}
    assert notif["driver"] == []
    assert "rpc_topic_prefix" in defaults
    assert notif["transport_url"] is None  # notifications fall back to the RPC URL
    # oslo.messaging's own option objects keep their defaults.
    own = dict(oslo_messaging.opts.list_opts())[None]
    assert {o.name: o.default for o in own}["transport_url"] == "rabbit://"


def test_rabbit_url_builds_clients_servers_and_notifiers_with_no_code_change():
    """Nothing is sent (there is no broker here): only construction is exercised."""
    conf = cfg.ConfigOpts()
    rpc.register_opts(conf)
    conf([])
    conf.set_override("transport_url", "rabbit://guest:guest@127.0.0.1:5672/")
    transport = rpc.get_transport(conf)
    assert type(transport._driver).__name__ == "RabbitDriver"  # noqa: SLF001
    rpc.get_client(conf, "compute", server="h1")
    rpc.get_server(conf, "compute", "h1", [object()])
    rpc.get_notifier(conf, "compute.h1")


_IMPORTS_INPROC = re.compile(
    r"^\s*(from\s+virtsdk\.rpc\.inproc|from\s+virtsdk\.rpc\s+import\s+.*\binproc|"
    r"import\s+virtsdk\.rpc\.inproc)",
    re.MULTILINE,
)


def test_only_the_driver_module_knows_about_inproc():
    assert _IMPORTS_INPROC.search("from virtsdk.rpc import inproc\n")
    assert _IMPORTS_INPROC.search("    from virtsdk.rpc.inproc import InProcDriver\n")
    assert _IMPORTS_INPROC.search("import virtsdk.rpc.inproc_broker\n")
    root = pathlib.Path(virtsdk.__file__).resolve().parent.parent
    offenders = []
    for tree in (root / "virtsdk", root / "drivers", root / "contrib"):
        for path in tree.rglob("*.py"):
            if path.parent == root / "virtsdk" / "rpc" and path.name.startswith("inproc"):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if _IMPORTS_INPROC.search(text) or "InProcDriver" in text:
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_serializer_round_trips_contexts_and_refuses_unknown_ones():
    serializer = rpc.VirtObjectSerializer()
    ctxt = RequestContext(user_id="bob")
    assert serializer.deserialize_context(serializer.serialize_context(ctxt)) == ctxt
    assert serializer.serialize_context({"a": 1}) == {"a": 1}
    try:
        serializer.serialize_context(object())
    except TypeError as exc:
        assert "RequestContext" in str(exc)
    else:  # pragma: no cover - the assertion above is the test
        raise AssertionError("an unknown context type was accepted")
