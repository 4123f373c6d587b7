"""End to end through the API layer with the libvirt driver on the lab: boot, resize
to the other host, revert, resize again, confirm.

The cloud is the ``libvirt_cloud`` fixture: an EmbeddedCloud with one compute service
per lab host, each with its own ``[libvirt]`` section, on one bus and database.
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
GiB = 1024 ** 3
TIMEOUT = 180


def test_resize_revert_resize_confirm_through_the_api(libvirt_cloud: Any,
                                                      guest_image: Any) -> None:
    cloud = libvirt_cloud
    api, ctx = cloud.api, get_admin_context()
    api.flavor_create(ctx, "lv-small", 256, 1, 1)
    api.flavor_create(ctx, "lv-big", 256, 1, 2)
    image = ImageMeta(id=f"vsdk-guest-{guest_image.key}",
                      properties={"kernel": str(guest_image.kernel),
                                  "initrd": str(guest_image.initrd),
                                  "cmdline": guest_image.cmdline()})
    inst = api.create_instance(ctx, "api-vm", "lv-small", image=image)
    inst = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert inst.vm_state == VMState.ACTIVE and inst.power_state == PowerState.RUNNING, inst
    src = inst.host
    log_src = console(cloud, src, inst.uuid)
    log_src.wait_for_heartbeat(TIMEOUT)
    marker = log_src.wait_for(r"MARKER (\S+) new", TIMEOUT).group(1)
    assert_audit_clean(cloud)

    api.resize(ctx, inst.uuid, "lv-big")
    resized = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert resized.vm_state == VMState.RESIZED, resized
    dst = resized.host
    assert dst != src and dst in cloud.computes
    log_dst = console(cloud, dst, inst.uuid)
    log_dst.wait_for_heartbeat(TIMEOUT)
    assert log_dst.wait_for(r"MARKER (\S+) found", TIMEOUT).group(1) == marker
    dst_driver = cloud.computes[dst].driver
    assert dst_driver.get_instance_disk_info(resized)[0].virt_disk_size == 2 * GiB
    mig = api.list_migrations(ctx, instance_uuid=inst.uuid)[-1]
    assert mig.status == MigrationStatus.FINISHED and mig.progress == 100
    assert_audit_clean(cloud)  # both copies belong to the migration in progress

    api.revert_resize(ctx, inst.uuid)
    reverted = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert reverted.vm_state == VMState.ACTIVE and reverted.host == src, reverted
    assert not dst_driver.instance_exists(reverted)
    src_driver = cloud.computes[src].driver
    assert src_driver.get_info(reverted).state is PowerState.RUNNING
    assert src_driver.get_instance_disk_info(reverted)[0].virt_disk_size == GiB
    # the original guest boots again on the source and finds its marker
    second_boot = log_src.wait_for(r"BOOT ([0-9a-f]+)", TIMEOUT,
                                   start=log_src.text().index(marker)).group(1)
    log_src.wait_for_heartbeat(TIMEOUT, boot_id=second_boot)
    assert log_src.boot_ids()[-1] == second_boot != log_src.boot_ids()[0]
    assert log_src.markers()[-1].token == marker and log_src.markers()[-1].how == "found"
    assert_audit_clean(cloud)

    api.resize(ctx, inst.uuid, "lv-big")
    assert api.wait(ctx, inst.uuid, timeout=TIMEOUT).vm_state == VMState.RESIZED
    api.confirm_resize(ctx, inst.uuid)
    done = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert done.vm_state == VMState.ACTIVE and done.host == dst and done.flavor.name == "lv-big"
    assert not src_driver.instance_exists(done)
    assert not src_driver._paths.resize_dir(done).exists()
    assert not src_driver._paths.instance_dir(done).exists()
    assert cloud.computes[dst].driver.get_info(done).state is PowerState.RUNNING
    assert_audit_clean(cloud)

    api.delete_instance(ctx, inst.uuid)
    gone = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert gone.vm_state == VMState.DELETED
    assert not cloud.computes[dst].driver.instance_exists(done)
    assert_audit_clean(cloud)
