"""``virtsdk-manage`` on a database (no broker needed): service list / disable /
enable, migration list / show, reset-state; bad input is one line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtsdk.cli import manage
from virtsdk.db import migration
from virtsdk.db.api import Database
from virtsdk.objects import Flavor, Instance, Migration
from virtsdk.states import MigrationStatus, MigrationType, TaskState, VMState


@pytest.fixture
def conf_file(tmp_path: Path) -> tuple[Path, Database]:
    url = f"sqlite:///{tmp_path / 'v.sqlite'}"
    conf = tmp_path / "virtsdk.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n[database]\nconnection = {url}\n")
    migration.db_sync(url)
    return conf, Database(url)


def run(conf: Path, *args: str) -> int:
    return manage.main(["--config-file", str(conf), *args])


def test_service_disable_enable_and_list(conf_file, capsys) -> None:
    conf, db = conf_file
    db.service_register("h1", "virtsdk-compute", "compute", {}, {})
    db.service_register("c1", "virtsdk-conductor", "conductor", {}, {})
    assert run(conf, "service", "disable", "h1", "--reason", "disk swap") == 0
    capsys.readouterr()
    assert run(conf, "service", "list") == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "│ h1" in line)
    assert "disabled" in row and "disk swap" in row and " up " in row
    assert any("virtsdk-conductor" in line for line in out.splitlines())
    assert db.service_get("h1").disabled  # type: ignore[union-attr]
    assert run(conf, "service", "enable", "h1") == 0
    svc = db.service_get("h1")
    assert svc is not None and not svc.disabled and svc.disabled_reason is None
    assert run(conf, "service", "disable", "nohost") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_migration_show_and_reset_state(conf_file, capsys) -> None:
    conf, db = conf_file
    inst = Instance(name="vm", flavor=Flavor("small", 256, 1, 1), host="h1",
                    vm_state=VMState.ERROR, task_state=TaskState.MIGRATING)
    db.instance_create(inst)
    mig = db.migration_create(Migration(instance_uuid=inst.uuid, source_host="h1",
                                        dest_host="h2", migration_type=MigrationType.LIVE,
                                        status=MigrationStatus.FAILED))
    assert run(conf, "migration", "list", "--instance", inst.uuid) == 0
    assert "failed" in capsys.readouterr().out
    assert run(conf, "migration", "show", str(mig.id)) == 0
    out = capsys.readouterr().out
    assert "live-migration" in out and "h2" in out
    assert run(conf, "migration", "show", "999") == 1
    assert "not found" in capsys.readouterr().err
    assert run(conf, "reset-state", inst.uuid) == 0
    after = db.instance_get(inst.uuid)
    assert (after.vm_state, after.task_state) == (VMState.ACTIVE, None)
