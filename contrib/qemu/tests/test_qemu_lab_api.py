"""End to end through the API layer with the QEMU driver on the lab: an EmbeddedCloud
with one qemu compute service per lab host (no libvirtd involved) boots a guest, live
migrates it (same boot, same memory), resizes it to the other host and confirms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from virtsdk_lab.guest import ConsoleLog

from virtsdk.context import get_admin_context
from virtsdk.objects import ImageMeta
from virtsdk.states import MigrationStatus, PowerState, VMState

from .qemu_lab import QEMU_DIR, clean_qemu_dir

pytestmark = pytest.mark.lab
TIMEOUT = 240


@pytest.fixture
def qemu_cloud(lab: Any) -> Iterator[Any]:
    from virtsdk.cloud import EmbeddedCloud

    roots = {h.name: Path(h.host_dir) / QEMU_DIR for h in lab.hosts}
    common = {"compute": {"report_interval": 1.0, "shutdown_timeout": 30,
                          "shutdown_retry_interval": 2},
              "qemu": {"shutdown_retry_interval": 2, "accel": "tcg"},
              "live_migration": {"monitor_interval": 0.2}}
    per_host = {h.name: {"qemu": {"instances_path": str(roots[h.name]),
                                  "my_ip": h.address,
                                  "host_exec_prefix": list(h.exec_prefix)}}
                for h in lab.hosts}
    cloud = EmbeddedCloud([h.name for h in lab.hosts], "qemu", overrides=common,
                          host_overrides=per_host).start()
    try:
        yield cloud
    finally:
        cloud.stop()
        for root in roots.values():
            clean_qemu_dir(root)


def console(cloud: Any, host: str, uuid: str) -> ConsoleLog:
    return ConsoleLog(cloud.computes[host].driver.paths.instance_dir(uuid) / "console.log")


def test_boot_live_migrate_resize_confirm_through_the_api(qemu_cloud: Any,
                                                          guest_meta: ImageMeta) -> None:
    cloud = qemu_cloud
    api, ctx = cloud.api, get_admin_context()
    api.flavor_create(ctx, "q-small", 96, 1, 0)
    api.flavor_create(ctx, "q-big", 128, 1, 0)
    inst = api.wait(ctx, api.create_instance(ctx, "api-qemu", "q-small",
                                             image=guest_meta).uuid, timeout=TIMEOUT)
    assert inst.vm_state == VMState.ACTIVE and inst.power_state == PowerState.RUNNING, inst
    src = inst.host
    log = console(cloud, src, inst.uuid)
    boot = log.wait_for_heartbeat(TIMEOUT).boot_id
    log.wait_for(r"MEMCHECK", TIMEOUT)
    memcheck = log.memchecks()[0].sha256

    mig = api.live_migrate(ctx, inst.uuid)
    moved = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert moved.vm_state == VMState.ACTIVE and moved.host != src, moved
    record = api.get_migration(ctx, inst.uuid, mig.id)
    assert record.status == MigrationStatus.COMPLETED, record
    log_b = console(cloud, moved.host, inst.uuid)
    log_b.wait_for(r"MEMCHECK", 60)
    assert {h.boot_id for h in log_b.heartbeats()} == {boot} and log_b.boot_ids() == []
    assert {m.sha256 for m in log_b.memchecks()} == {memcheck}
    assert not cloud.computes[src].driver.instance_exists(moved)

    api.resize(ctx, inst.uuid, "q-big")
    resized = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert resized.vm_state == VMState.RESIZED and resized.host == src, resized
    api.confirm_resize(ctx, inst.uuid)
    done = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert done.vm_state == VMState.ACTIVE and done.flavor.name == "q-big", done
    info = cloud.computes[src].driver.get_info(done)
    assert info.state is PowerState.RUNNING and info.max_mem_kb == 128 * 1024
    assert not cloud.computes[moved.host].driver.instance_exists(done)

    api.delete_instance(ctx, inst.uuid)
    assert api.wait(ctx, inst.uuid, timeout=TIMEOUT).vm_state == VMState.DELETED
    assert cloud.computes[src].driver.list_instances() == []
