"""Errors the API raises after an RPC hop are short and typed; the traceback is logged.

Run on virtsdk's ``inproc://`` and on oslo.messaging's own ``fake://`` driver: the
behaviour lives in the RPC server's dispatcher and in the error classes, not in a
transport, so it must hold on both (and on any broker).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from virtsdk_fake.fabric import drop_fabric, get_fabric

from virtsdk.cloud import EmbeddedCloud
from virtsdk.context import RequestContext
from virtsdk.exceptions import MigrationPreCheckError, NoValidHost, VirtSDKError

from .conftest import HOSTS

# what a formatted Python traceback (and oslo's re-raise) would add to a message
TRACEBACK_MARKERS = ("Traceback", 'File "', "site-packages", ".py", "line ", "\n")


@pytest.fixture(scope="module", params=["inproc", "fake"])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[EmbeddedCloud]:
    url = ("fake://" if request.param == "fake"
           else f"inproc:///errors-{uuid.uuid4().hex[:8]}")
    fabric = f"errs-{uuid.uuid4().hex[:8]}"
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"transport_url": url},
        "fake": {"fabric": fabric, "time_scale": 0.002, "host_memory_mb": 4096},
        "compute": {"report_interval": 0.5},
    }
    c = EmbeddedCloud(HOSTS, "fake", state_path=str(tmp_path_factory.mktemp("errs")),
                      overrides=overrides)
    c.start()
    c.api.flavor_create(c.ctx, "small", 256, 1, 1)
    c.api.flavor_create(c.ctx, "huge", 1_000_000, 1, 1)
    yield c
    c.stop()
    drop_fabric(fabric)


def _check_short(err: VirtSDKError, request_id: str, caplog: pytest.LogCaptureFixture
                 ) -> None:
    text = str(err)
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, (marker, text)
    assert len(text) < 400, text
    assert err.request_id == request_id
    logged = [r for r in caplog.records
              if r.name == "virtsdk.rpc.remote_errors" and request_id in r.getMessage()]
    assert logged, "the serving service logged nothing under the error's request id"
    assert any("Traceback (most recent call last)" in logging.Formatter().format(r)
               for r in logged)


def test_no_valid_host_is_short_and_carries_the_request_id(
        cloud: EmbeddedCloud, caplog: pytest.LogCaptureFixture) -> None:
    ctx = RequestContext()
    with caplog.at_level(logging.WARNING, logger="virtsdk.rpc.remote_errors"), \
            pytest.raises(NoValidHost) as info:
        cloud.api.create_instance(ctx, "too-big", "huge")
    _check_short(info.value, ctx.request_id, caplog)
    assert "huge" in str(info.value) or "memory" in str(info.value)


def test_precheck_error_from_a_compute_is_short_after_two_hops(
        cloud: EmbeddedCloud, caplog: pytest.LogCaptureFixture) -> None:
    """compute -> conductor -> API: the compute's error crosses two RPC calls."""
    api = cloud.api
    inst = api.create_instance(cloud.ctx, f"vm-{uuid.uuid4().hex[:6]}", "small")
    inst = api.wait(cloud.ctx, inst.uuid, timeout=30)
    dest = next(h for h in HOSTS if h != inst.host)
    fabric = get_fabric(cloud.conf.fake.fabric)
    fabric.inject("check_can_live_migrate_destination", host=dest,
                  exc=MigrationPreCheckError("destination refused by a test fault"))
    ctx = RequestContext()
    try:
        with caplog.at_level(logging.WARNING, logger="virtsdk.rpc.remote_errors"), \
                pytest.raises(MigrationPreCheckError) as info:
            api.live_migrate(ctx, inst.uuid, host=dest)
    finally:
        fabric.faults.clear()
    assert "destination refused by a test fault" in str(info.value)
    _check_short(info.value, ctx.request_id, caplog)
    # both hops logged it under the same id
    hops = {r.getMessage().split(" raised ")[0] for r in caplog.records
            if ctx.request_id in r.getMessage()}
    assert any("compute on " in h for h in hops) and any("conductor on " in h for h in hops)
    api.wait(cloud.ctx, inst.uuid, timeout=30)
    api.delete_instance(cloud.ctx, inst.uuid)
