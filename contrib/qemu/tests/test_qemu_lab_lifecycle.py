"""The QEMU driver's lifecycle on a real lab host: QEMU started in the host's network
namespace, managed over QMP only (no libvirtd involved)."""

from __future__ import annotations

from typing import Any

import pytest
from virtsdk_lab.guest import ConsoleLog

from virtsdk.context import RequestContext
from virtsdk.exceptions import InstanceNotFound
from virtsdk.objects import NetworkInfo
from virtsdk.states import PowerState

from .qemu_lab import make_qemu_driver, new_instance, small_flavor

pytestmark = pytest.mark.lab

NET = NetworkInfo()
BOOT = 180.0


@pytest.mark.parametrize("images_type", ["qcow2", "raw"])
def test_spawn_power_cycle_restart_and_destroy(lab: Any, qemu_drivers: Any, guest_meta: Any,
                                               images_type: str) -> None:
    host = lab.hosts[0]
    drv = make_qemu_driver(host, images_type=images_type)
    ctx = RequestContext()
    inst = new_instance(f"life-{images_type}", guest_meta, small_flavor(root_gb=1))
    drv.spawn(ctx, inst, guest_meta, NET)
    log = ConsoleLog(drv.paths.instance_dir(inst) / "console.log")
    first = log.wait_for_heartbeat(BOOT)
    assert log.markers()[-1].how == "new"
    marker = log.marker()
    assert drv.get_info(inst).state == PowerState.RUNNING
    assert drv.list_instances() == [inst.name]
    disks = drv.get_instance_disk_info(inst)
    assert [(d.path, d.type, d.virt_disk_size) for d in disks] == [
        ("disk", images_type, 1024 ** 3)]
    # the guest runs in the host's network namespace: its VNC server listens there
    ss = host.run(["ss", "-ltn"]).stdout
    assert f"{host.address}:59" in ss

    # a restarted compute service (a new driver object) finds the guest again
    again = make_qemu_driver(host, images_type=images_type)
    assert again.list_instances() == [inst.name]
    assert again.get_info(inst).state == PowerState.RUNNING

    again.power_off(inst)
    assert again.get_info(inst).state == PowerState.SHUTDOWN
    assert drv.list_instances() == [inst.name]  # stopped guests are listed too
    start = len(log.text())
    again.power_on(ctx, inst, NET)
    beat = log.wait_for_heartbeat(BOOT, after_seq=0)
    log.wait_for(r"MARKER \S+ found", BOOT, start=start)
    assert log.marker() == marker  # the disk kept what the first boot wrote
    assert beat.boot_id != first.boot_id or log.boot_ids()[-1] != first.boot_id
    assert drv.get_info(inst).state == PowerState.RUNNING

    # destroy keeping the disks: the guest is gone, the disk stays
    drv.destroy(ctx, inst, NET, destroy_disks=False)
    assert drv.list_instances() == []
    assert (drv.paths.instance_dir(inst) / "disk").is_file()
    with pytest.raises(InstanceNotFound):
        drv.get_info(inst)
    drv.destroy(ctx, inst, NET)
    assert not drv.paths.instance_dir(inst).exists()
    drv.destroy(ctx, inst, NET)  # idempotent


def test_host_resources_and_capabilities(lab: Any, qemu_drivers: Any) -> None:
    drv = qemu_drivers[0]
    res = drv.get_available_resource()
    assert res.hostname == drv.host and res.memory_mb > 0 and res.vcpus >= 1
    assert res.hypervisor_type == "QEMU" and res.cpu_info["accel"] == "tcg"
    caps = drv.capabilities
    assert caps.supports_resize and caps.supports_live_migration
    assert caps.supports_block_migration and not caps.supports_migrate_to_same_host
