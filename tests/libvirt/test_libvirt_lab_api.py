"""End to end through the API layer with the libvirt driver on the lab: boot, resize
to the other host, revert, resize again, confirm.

The embedded cloud shares one configuration between its hosts, but each libvirt host
needs its own ``[libvirt]`` section, so this test assembles the same pieces by hand:
one ConfigOpts for the API and conductor, and one per compute host that differs only
in ``[libvirt]`` (all on the same inproc:// virtual host and database).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from virtsdk_lab.guest import ConsoleLog

from virtsdk.api import API
from virtsdk.cloud import make_conf
from virtsdk.compute.service import ComputeService
from virtsdk.conductor.service import ConductorService
from virtsdk.context import get_admin_context
from virtsdk.db.api import Database
from virtsdk.objects import ImageMeta
from virtsdk.states import MigrationStatus, PowerState, VMState

pytestmark = pytest.mark.lab
GiB = 1024 ** 3
TIMEOUT = 180


class LibvirtCloud:
    """API + conductor + one libvirt compute service per lab host."""

    def __init__(self, lab: Any) -> None:
        self.state_path = tempfile.mkdtemp(prefix="virtsdk-lvcloud-")
        self.url = f"inproc:///lvcloud-{uuid.uuid4().hex[:10]}"
        common = {"compute": {"report_interval": 1.0, "shutdown_timeout": 30,
                              "shutdown_retry_interval": 2},
                  "libvirt": {"shutdown_retry_interval": 2}}
        self.conf = make_conf(self.state_path, "libvirt", common, self.url)
        self.db = Database.from_conf(self.conf)
        self.conductor = ConductorService(self.conf, self.db)
        self.api = API(self.conf, self.db)
        self.computes: dict[str, ComputeService] = {}
        self.lab = lab
        self.common = common

    def host_conf(self, host: Any) -> Any:
        overrides = {**self.common, "libvirt": {
            **self.common["libvirt"],
            "connection_uri": host.libvirt_uri, "instances_path": str(host.instances_path),
            "my_ip": host.address, "host_exec_prefix": list(host.exec_prefix)}}
        return make_conf(self.state_path, "libvirt", overrides, self.url)

    def start(self) -> LibvirtCloud:
        self.conductor.start()
        for host in self.lab.hosts:
            service = ComputeService(self.host_conf(host), host.name, self.db, "libvirt")
            service.start()
            self.computes[host.name] = service
        return self

    def stop(self) -> None:
        for service in self.computes.values():
            service.stop()
        self.conductor.stop()
        self.db.dispose()


@pytest.fixture
def cloud(lab: Any, lab_drivers: Any) -> Iterator[LibvirtCloud]:
    # lab_drivers only for its clean-up of the lab hosts afterwards
    c = LibvirtCloud(lab).start()
    try:
        yield c
    finally:
        c.stop()


def console(cloud: LibvirtCloud, host: str, instance_uuid: str) -> ConsoleLog:
    driver = cloud.computes[host].driver
    return ConsoleLog(driver._paths.instance_dir(instance_uuid) / "console.log")


def test_resize_revert_resize_confirm_through_the_api(cloud: LibvirtCloud,
                                                      guest_image: Any) -> None:
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

    api.resize(ctx, inst.uuid, "lv-big")
    assert api.wait(ctx, inst.uuid, timeout=TIMEOUT).vm_state == VMState.RESIZED
    api.confirm_resize(ctx, inst.uuid)
    done = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert done.vm_state == VMState.ACTIVE and done.host == dst and done.flavor.name == "lv-big"
    assert not src_driver.instance_exists(done)
    assert not src_driver._paths.resize_dir(done).exists()
    assert not src_driver._paths.instance_dir(done).exists()
    assert cloud.computes[dst].driver.get_info(done).state is PowerState.RUNNING

    api.delete_instance(ctx, inst.uuid)
    gone = api.wait(ctx, inst.uuid, timeout=TIMEOUT)
    assert gone.vm_state == VMState.DELETED
    assert not cloud.computes[dst].driver.instance_exists(done)
