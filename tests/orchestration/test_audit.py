"""The reconcile task and ``virtsdk audit``: what the hypervisor (the fake fabric)
holds against what the database says, on every host."""

from __future__ import annotations

import pytest

from tests.orchestration.conftest import boot
from virtsdk.audit import audit_cloud
from virtsdk.cli.main import main
from virtsdk.states import VMState


def resized(cloud, fabric):
    """An instance booted on host1 and resized onto host2, waiting for confirm."""
    inst, _ = boot(cloud, fabric, host="host1")
    cloud.api.migrate(cloud.ctx, inst.uuid, host="host2")
    assert cloud.api.wait(cloud.ctx, inst.uuid).vm_state == VMState.RESIZED
    return inst


def leave_orphan_copy(cloud, fabric):
    """Issue scenario: confirm fails on the source; the operator resets and deletes
    the instance: the kept resize copy stays on host1, using its memory."""
    api, ctx = cloud.api, cloud.ctx
    inst = resized(cloud, fabric)
    fabric.inject("confirm_migration", host="host1")
    api.confirm_resize(ctx, inst.uuid)
    assert api.wait(ctx, inst.uuid).vm_state == VMState.ERROR
    api.reset_state(ctx, inst.uuid)
    api.delete_instance(ctx, inst.uuid)
    assert fabric.find(inst.uuid) == [("host1", "resize_copy")]
    return inst


def write_conf(tmp_path, cloud) -> str:
    path = tmp_path / "virtsdk.conf"
    path.write_text(f"[DEFAULT]\ntransport_url = {cloud.conf.transport_url}\n"
                    f"[database]\nconnection = {cloud.db.url}\n")
    return str(path)


def test_audit_reports_and_fixes_an_orphaned_resize_copy(cloud, fabric, tmp_path, capsys):
    inst = leave_orphan_copy(cloud, fabric)
    report = audit_cloud(cloud.conf, cloud.db, cloud.ctx)
    rows = [(d.host, d.instance_uuid, d.held, d.fixable) for d in report.differences]
    assert ("host1", inst.uuid, "resize_copy", True) in rows
    assert any(d.held == "usage" and d.host == "host1" for d in report.differences)
    conf_file = write_conf(tmp_path, cloud)
    assert main(["--config-file", conf_file, "audit"]) == 1
    out = capsys.readouterr().out
    assert inst.uuid in out and "resize_copy" in out and "host1" in out
    assert main(["--config-file", conf_file, "audit", "--fix"]) == 0
    assert fabric.find(inst.uuid) == []
    assert main(["--config-file", conf_file, "audit"]) == 0
    assert "no differences on 3 host(s)" in capsys.readouterr().out
    hyp = fabric.host("host1").usage().memory_mb
    assert hyp == cloud.db.host_usage("host1").memory_mb


def test_reconcile_task_removes_safe_orphans_after_the_grace_period(cloud, fabric):
    inst = leave_orphan_copy(cloud, fabric)
    now = [0.0]
    reconciler = cloud.computes["host1"].manager.reconciler
    reconciler._clock = lambda: now[0]  # noqa: SLF001 - a controllable clock
    reconciler.grace = 60.0
    left = reconciler.run(cloud.ctx)
    assert fabric.find(inst.uuid) == [("host1", "resize_copy")]  # within the grace
    assert any(d.instance_uuid == inst.uuid for d in left)
    now[0] = 61.0
    left = reconciler.run(cloud.ctx)
    assert fabric.find(inst.uuid) == []
    assert left == []


def test_audit_reports_but_never_removes_the_only_copy(cloud, fabric):
    """A resize copy that is the instance's only copy (the database places the
    instance on that host, nothing is defined there) is reported, not removed."""
    api, ctx = cloud.api, cloud.ctx
    inst = resized(cloud, fabric)
    fabric.inject("finish_revert_migration", host="host1")
    api.revert_resize(ctx, inst.uuid)
    now = api.wait(ctx, inst.uuid)
    assert now.vm_state == VMState.ERROR and now.host == "host1"
    assert fabric.find(inst.uuid) == [("host1", "resize_copy")]
    report = audit_cloud(cloud.conf, cloud.db, ctx, fix=True)
    mine = [d for d in report.differences if d.instance_uuid == inst.uuid]
    assert mine and not any(d.fixable for d in mine)
    assert fabric.find(inst.uuid) == [("host1", "resize_copy")]
    # the operator's way out: reset, then delete (the copy goes with the instance's
    # host cleanup, or the audit removes it once the instance is deleted)
    api.reset_state(ctx, inst.uuid)
    api.delete_instance(ctx, inst.uuid)
    audit_cloud(cloud.conf, cloud.db, ctx, fix=True)
    assert fabric.find(inst.uuid) == []


@pytest.mark.parametrize("kind", ["instance", "incoming"])
def test_audit_removes_holdings_of_deleted_instances(cloud, fabric, kind):
    api, ctx = cloud.api, cloud.ctx
    inst, _ = boot(cloud, fabric, host="host3")
    guest = fabric.host("host3").instances[inst.uuid]
    api.delete_instance(ctx, inst.uuid)
    with fabric.lock:
        store = fabric.host("host3").instances if kind == "instance" else \
            fabric.host("host3").incoming_live
        store[inst.uuid] = guest  # the hypervisor kept it: a destroy that was lost
    report = audit_cloud(cloud.conf, cloud.db, ctx)
    assert [(d.instance_uuid, d.fixable) for d in report.differences
            if d.host == "host3" and d.held != "usage"] == [(inst.uuid, True)]
    assert audit_cloud(cloud.conf, cloud.db, ctx, fix=True).differences == []
    assert fabric.find(inst.uuid) == []


def test_periodic_reconcile_runs_on_every_compute(tmp_path):
    """The service's own loop (``[compute] reconcile_interval``) removes a safe
    orphan once ``reconcile_grace`` has passed, with no audit call."""
    import time

    from virtsdk_fake.fabric import get_fabric

    from tests.orchestration.conftest import own_cloud

    with own_cloud(tmp_path, compute={"reconcile_interval": 0.2,
                                      "reconcile_grace": 0.0}) as c:
        fabric = get_fabric(c.conf.fake.fabric)
        inst, _ = boot(c, fabric, host="host2")
        guest = fabric.host("host2").instances[inst.uuid]
        c.api.delete_instance(c.ctx, inst.uuid)
        with fabric.lock:
            fabric.host("host2").incoming_live[inst.uuid] = guest
        deadline = time.monotonic() + 20
        while fabric.find(inst.uuid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fabric.find(inst.uuid) == []
