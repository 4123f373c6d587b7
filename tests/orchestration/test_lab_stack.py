"""The whole orchestration stack on the real two-host libvirt lab.

API -> conductor -> compute managers (one per lab host, in this process) -> the
libvirt driver talking to each host's own libvirtd.  One guest (the lab's test
kernel + initramfs) boots, live-migrates to the other host, cold-migrates back
(confirm), survives a lost ``pre_live_migration`` message (rolled back) and is
deleted; after every step the database's host is where libvirt
really runs the domain, and only there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import libvirt
import oslo_messaging
import pytest

from tests.audit_check import assert_audit_clean
from virtsdk.audit import audit_cloud
from virtsdk.cloud import EmbeddedCloud
from virtsdk.driver import HELD_INCOMING
from virtsdk.objects import ImageMeta, LiveMigrateData, NetworkInfo
from virtsdk.states import MigrationStatus, PowerState, VMState

pytestmark = pytest.mark.lab


def where(lab: Any, instance_uuid: str) -> list[tuple[str, bool]]:
    """(lab host, domain active) for every lab host that defines the domain."""
    out = []
    for host in lab.hosts:
        conn = libvirt.open(host.libvirt_uri)
        try:
            dom = conn.lookupByUUIDString(instance_uuid)
            out.append((host.name, bool(dom.isActive())))
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    return out


@pytest.fixture
def lab_cloud(lab: Any, tmp_path: Any) -> Iterator[EmbeddedCloud]:
    from drivers.libvirt.tests.libvirt_lab import clean_lab_host, lab_host_overrides

    per_host = lab_host_overrides(lab)
    cloud = EmbeddedCloud([h.name for h in lab.hosts], "libvirt", state_path=str(tmp_path),
                          overrides={"compute": {"report_interval": 2.0}},
                          host_overrides=per_host)
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()
        for host in lab.hosts:
            clean_lab_host(host)


def test_boot_live_migrate_cold_migrate_delete_on_libvirt(lab, lab_cloud, guest_image):
    api, ctx = lab_cloud.api, lab_cloud.ctx
    a, b = (h.name for h in lab.hosts)
    api.flavor_create(ctx, "lab.small", 256, 1, 1)
    image = ImageMeta(id=f"vsdk-guest-{guest_image.key}", name="vsdk test guest",
                      properties={"kernel": str(guest_image.kernel),
                                  "initrd": str(guest_image.initrd),
                                  "cmdline": guest_image.cmdline()})
    inst = api.create_instance(ctx, f"stack-{uuid.uuid4().hex[:6]}", "lab.small",
                               image=image, host=a)
    inst = api.wait(ctx, inst.uuid, timeout=180)
    assert (inst.vm_state, inst.host, inst.power_state) == (VMState.ACTIVE, a,
                                                            PowerState.RUNNING)
    assert where(lab, inst.uuid) == [(a, True)]
    assert_audit_clean(lab_cloud)

    mig = api.live_migrate(ctx, inst.uuid, host=b)
    moved = api.wait(ctx, inst.uuid, timeout=300)
    final = api.get_migration(ctx, inst.uuid, mig.id)
    assert (final.status, final.progress) == (MigrationStatus.COMPLETED, 100), final
    assert (moved.host, moved.vm_state) == (b, VMState.ACTIVE)
    assert where(lab, inst.uuid) == [(b, True)]
    assert_audit_clean(lab_cloud)

    api.migrate(ctx, inst.uuid, host=a)
    resized = api.wait(ctx, inst.uuid, timeout=300)
    assert (resized.vm_state, resized.host) == (VMState.RESIZED, a), \
        api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
    api.confirm_resize(ctx, inst.uuid)
    back = api.wait(ctx, inst.uuid, timeout=120)
    assert (back.vm_state, back.host) == (VMState.ACTIVE, a)
    assert api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].status == \
        MigrationStatus.CONFIRMED
    assert where(lab, inst.uuid) == [(a, True)]
    assert_audit_clean(lab_cloud)

    rpc = lab_cloud.computes[a].manager.compute_rpc

    def lose(method: str, host: str) -> None:
        if method == "pre_live_migration":
            rpc.fault_hook = None
            raise oslo_messaging.MessagingTimeout("lab test: message lost")

    rpc.fault_hook = lose
    failed = api.live_migrate(ctx, inst.uuid, host=b)
    stayed = api.wait(ctx, inst.uuid, timeout=120)
    assert (stayed.vm_state, stayed.host) == (VMState.ACTIVE, a)
    assert api.get_migration(ctx, inst.uuid, failed.id).status == MigrationStatus.ERROR
    assert where(lab, inst.uuid) == [(a, True)]
    assert_audit_clean(lab_cloud)  # nothing prepared on b is left behind

    # b prepared a live-migration target and its source went away: the audit
    # reports that one holding as safely orphaned and --fix removes exactly it
    b_driver = lab_cloud.computes[b].driver
    b_driver.pre_live_migration(ctx, stayed, NetworkInfo(), [], LiveMigrateData(
        block_migration=False, is_shared_instance_path=False,
        is_shared_block_storage=True))
    report = audit_cloud(lab_cloud.conf, lab_cloud.db, ctx)
    assert [(d.host, d.instance_uuid, d.held, d.fixable) for d in report.differences] \
        == [(b, inst.uuid, HELD_INCOMING, True)], report.differences
    fixed = assert_audit_clean(lab_cloud, fix=True).fixed
    assert [(d.host, d.instance_uuid, d.held) for d in fixed] == \
        [(b, inst.uuid, HELD_INCOMING)]
    assert where(lab, inst.uuid) == [(a, True)]
    assert not b_driver._paths.instance_dir(inst.uuid).exists()  # noqa: SLF001

    api.delete_instance(ctx, inst.uuid)
    assert where(lab, inst.uuid) == []
    assert_audit_clean(lab_cloud)
