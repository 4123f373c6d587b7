"""``virtsdk host drain`` / ``host enable`` against an embedded cloud's API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from virtsdk_fake.fabric import drop_fabric, get_fabric

from tests.orchestration.conftest import boot, make_cloud
from virtsdk.cli import host as host_cli
from virtsdk.cli.main import main
from virtsdk.cloud import EmbeddedCloud
from virtsdk.services import COMPUTE


@pytest.fixture
def cloud(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedCloud]:
    c = make_cloud(tmp_path, compute={"max_concurrent_live_migrations_outbound": 2})
    monkeypatch.setattr(host_cli, "connect", lambda files: (c.api, c.ctx))
    yield c
    c.api.stop_drains()
    c.stop()
    drop_fabric(c.conf.fake.fabric)


def test_dry_run_then_drain_with_progress_then_enable(
        cloud: EmbeddedCloud, capsys: pytest.CaptureFixture[str]) -> None:
    fab = get_fabric(cloud.conf.fake.fabric)
    booted = [boot(cloud, fab, "small", host="host1")[0] for _ in range(3)]
    assert main(["host", "drain", "host1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Drain plan of host1" in out and "estimated" in out
    assert all(i.name in out for i in booted)
    assert not cloud.db.service_get("host1", COMPUTE).disabled  # type: ignore[union-attr]
    assert main(["host", "drain", "host1", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "downtime" in out
    assert not cloud.api.list_instances(cloud.ctx, "host1")
    assert cloud.db.service_get("host1", COMPUTE).disabled  # type: ignore[union-attr]
    assert main(["host", "enable", "host1"]) == 0
    assert not cloud.db.service_get("host1", COMPUTE).disabled  # type: ignore[union-attr]


def test_errors_are_one_line(cloud: EmbeddedCloud,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["host", "drain", "host1", "--abort"]) == 1
    err = capsys.readouterr().err
    assert "not being drained" in err and "Traceback" not in err
    assert main(["host", "drain", "bad_host!", "--dry-run"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_inproc_configuration_is_refused_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["host", "enable", "host1"]) == 1
    err = capsys.readouterr().err
    assert "inproc" in err and "Traceback" not in err
