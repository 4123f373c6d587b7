"""Live migration end to end with the libvirt driver: API -> conductor (checks on both
compute hosts) -> source compute (pre_live_migration on the destination over RPC,
``live_migration``, post steps) on the two lab hosts, one guest boot.

The cloud is the ``libvirt_cloud`` fixture (one compute service per lab host, each with
its own ``[libvirt]`` section).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.audit_check import assert_audit_clean
from virtsdk.context import get_admin_context
from virtsdk.objects import ImageMeta
from virtsdk.states import MigrationStatus, PowerState, VMState

from .libvirt_lab import console_of as console

pytestmark = pytest.mark.lab
TIMEOUT = 180


def test_live_migration_through_the_api(libvirt_cloud: Any, guest_image: Any) -> None:
    cloud = libvirt_cloud
    api, ctx = cloud.api, get_admin_context()
    api.flavor_create(ctx, "lv-live", 128, 1, 0)
    image = ImageMeta(id=f"vsdk-live-{guest_image.key}",
                      properties={"kernel": str(guest_image.kernel),
                                  "initrd": str(guest_image.initrd),
                                  "cmdline": guest_image.cmdline(memcheck_mib=4)})
    inst = api.wait(ctx, api.create_instance(ctx, "api-live", "lv-live", image=image).uuid,
                    timeout=TIMEOUT)
    assert inst.vm_state == VMState.ACTIVE and inst.power_state == PowerState.RUNNING, inst
    src = str(inst.host)
    dst = next(h for h in cloud.computes if h != src)
    log_src = console(cloud, src, inst.uuid)
    beat = log_src.wait_for_heartbeat(TIMEOUT)
    memcheck = log_src.wait_for(r"MEMCHECK ([0-9a-f]{64})", TIMEOUT).group(1)
    assert_audit_clean(cloud)

    migration = api.live_migrate(ctx, inst.uuid, dst)
    moved = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    record = api.get_migration(ctx, inst.uuid, int(migration.id or 0))
    assert record.status == MigrationStatus.COMPLETED, (record, moved)
    assert record.progress == 100 and record.memory_total > 0
    assert moved.host == dst and moved.vm_state == VMState.ACTIVE
    assert moved.power_state == PowerState.RUNNING
    details = api.get_migration_details(ctx, int(migration.id or 0))
    assert details.get("downtime_ms", 0) > 0, details

    log_dst = console(cloud, dst, inst.uuid)
    after = log_dst.wait_for_heartbeat(TIMEOUT, boot_id=beat.boot_id)
    assert after.seq > beat.seq
    assert log_dst.boot_ids() == []  # the same boot, not a restart
    assert log_dst.wait_for(r"MEMCHECK ([0-9a-f]{64})", TIMEOUT).group(1) == memcheck
    src_driver = cloud.computes[src].driver
    assert not src_driver.instance_exists(moved)
    assert not src_driver._paths.instance_dir(inst.uuid).exists()  # noqa: SLF001
    assert_audit_clean(cloud)
