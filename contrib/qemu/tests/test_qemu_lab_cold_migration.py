"""Cold migration and resize of QEMU guests between two real lab hosts through the
SDK's disk transports (``stream`` over the network, ``local`` where the instance
paths are visible), with revert and confirm, and a transfer cut mid-way."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from virtsdk_lab.guest import ConsoleLog
from virtsdk_qemu.driver import QemuDriver

from virtsdk.context import get_admin_context
from virtsdk.exceptions import (
    DestinationDiskExists,
    DiskTransferError,
    InjectedFault,
    ResizeShrinkNotAllowed,
)
from virtsdk.objects import ImageMeta, Instance, NetworkInfo, TransferProgress
from virtsdk.states import PowerState
from virtsdk.testing import sequences

from .qemu_lab import make_qemu_driver, new_instance, small_flavor

pytestmark = pytest.mark.lab

GiB = 1024 ** 3
BOOT = 180.0
NET = NetworkInfo()
CTX = get_admin_context()
SMALL = small_flavor("small", root_gb=1)
BIG = small_flavor("big", root_gb=2)
RESIZE = "supports_resize"


def console(drv: QemuDriver, inst: Instance, directory: Path | None = None) -> ConsoleLog:
    return ConsoleLog((directory or drv.paths.instance_dir(inst)) / "console.log")


def next_boot(drv: QemuDriver, inst: Instance, known_boots: int = 0) -> tuple[str, str]:
    """Wait for boot number ``known_boots + 1`` and its first heartbeat; return its
    boot id and the disk marker it reported."""
    log = console(drv, inst)
    while len(log.boot_ids()) <= known_boots:
        log.wait_for(r"BOOT [0-9a-f]+", BOOT, start=len(log.text()))
    boot = log.boot_ids()[-1]
    log.wait_for_heartbeat(BOOT, boot_id=boot)
    marker = log.marker()
    assert marker is not None
    return boot, marker


def test_resize_to_other_host_revert_then_confirm(lab: Any, qemu_drivers: Any,
                                                  guest_meta: ImageMeta) -> None:
    a = make_qemu_driver(lab.hosts[0], disk_transport="stream")
    b = make_qemu_driver(lab.hosts[1], disk_transport="stream")
    inst = new_instance("resize-me", guest_meta, SMALL)
    a.spawn(CTX, inst, guest_meta, NET)
    boot_a, marker = next_boot(a, inst)

    # -- resize onto B over the network stream ----------------------------------------
    mig, data = sequences.cold_prepare(a, b, CTX, inst, BIG, RESIZE)
    assert data.transport == "stream" and data.ticket["address"] == b.qconf.my_ip
    with pytest.raises(DestinationDiskExists):
        b.prepare_migrate_disk_target(CTX, mig, inst, BIG)
    samples: list[TransferProgress] = []
    sent = sequences.cold_transfer(a, b, CTX, inst, BIG, data, RESIZE, dest=b.qconf.my_ip,
                                   network_info=NET, progress=samples.append)
    assert [d.path for d in sent] == ["disk"] and sent[0].checksum
    assert a.get_info(inst).state is PowerState.SHUTDOWN
    assert a.paths.resize_dir(inst).is_dir() and not a.paths.instance_dir(inst).exists()
    assert samples and samples[-1].bytes_done == samples[-1].bytes_total
    # what each host holds, for reconcile and the audit
    assert a.list_instance_uuids_on_host() == {inst.uuid: ["resize_copy"]}
    assert b.list_instance_uuids_on_host() == {inst.uuid: ["incoming"]}
    sequences.cold_finish(b, CTX, inst, mig, sent, BIG, RESIZE, network_info=NET)
    assert b.get_info(inst).state is PowerState.RUNNING
    boot_b, marker_b = next_boot(b, inst)
    assert marker_b == marker and boot_b != boot_a
    assert console(b, inst).markers()[-1].how == "found"
    assert [(d.path, d.virt_disk_size) for d in b.get_instance_disk_info(inst)] == [
        ("disk", 2 * GiB)]
    assert b.list_instances() == [inst.name]

    # -- revert: B drops its copy, A starts its kept one ------------------------------
    sequences.cold_revert(a, b, CTX, inst, mig, RESIZE, network_info=NET)
    assert not b.paths.instance_dir(inst).exists() and b.list_instances() == []
    assert inst.flavor == SMALL
    assert a.get_info(inst).state is PowerState.RUNNING
    _boot, marker_a = next_boot(a, inst, known_boots=1)
    assert marker_a == marker
    assert [(d.path, d.virt_disk_size) for d in a.get_instance_disk_info(inst)] == [
        ("disk", GiB)]
    assert not a.paths.resize_dir(inst).exists()

    # -- resize again with 'auto' (the lab's paths are visible: a local copy), a clean
    # ACPI shutdown, B left stopped; then confirm ------------------------------------
    a2, b2 = qemu_drivers
    mig2, sent2, _data2 = sequences.cold_send(a2, b2, CTX, inst, BIG, RESIZE,
                                              dest=b2.qconf.my_ip, network_info=NET,
                                              timeout=60, retry_interval=5)
    assert "SHUTDOWN" in console(a2, inst, a2.paths.resize_dir(inst)).text()
    sequences.cold_finish(b2, CTX, inst, mig2, sent2, BIG, RESIZE, power_on=False,
                          network_info=NET)
    assert b2.get_info(inst).state is PowerState.SHUTDOWN
    a2.confirm_migration(CTX, mig2, inst, NET)
    assert a2.list_instances() == []
    assert not a2.paths.resize_dir(inst).exists() and not a2.paths.instance_dir(inst).exists()
    b2.power_on(CTX, inst, NET)
    _boot, marker_b2 = next_boot(b2, inst)  # B's directory (and log) is new
    assert marker_b2 == marker


class CutMidway:
    """A progress callback that breaks the transfer before the disk is complete."""

    def __call__(self, progress: TransferProgress) -> None:
        if progress.bytes_done < progress.bytes_total:
            raise InjectedFault(f"transfer cut after {progress.bytes_done} bytes")


def test_refused_shrink_and_cut_transfer_leave_the_source_running(
        lab: Any, qemu_drivers: Any, guest_meta: ImageMeta) -> None:
    a = make_qemu_driver(lab.hosts[0], disk_transport="stream")
    b = make_qemu_driver(lab.hosts[1], disk_transport="stream")
    inst = new_instance("survivor", guest_meta, BIG)
    a.spawn(CTX, inst, guest_meta, NET)
    boot_1, marker = next_boot(a, inst)
    log = console(a, inst)
    inst_dir = a.paths.instance_dir(inst)

    # shrinking is refused before anything is touched: the same boot keeps running
    _mig, data = sequences.cold_prepare(a, b, CTX, inst, SMALL, RESIZE)
    listing = sorted(p.name for p in inst_dir.iterdir())
    with pytest.raises(ResizeShrinkNotAllowed):
        sequences.cold_transfer(a, b, CTX, inst, SMALL, data, RESIZE, dest=b.qconf.my_ip,
                                network_info=NET)
    assert sorted(p.name for p in inst_dir.iterdir()) == listing
    seq = log.last_heartbeat().seq  # type: ignore[union-attr]
    log.wait_for_heartbeat(BOOT, boot_id=boot_1, after_seq=seq)
    b.abort_migrate_disk_target(CTX, inst, data)
    assert not b.paths.instance_dir(inst).exists()

    # 16 MiB of data on the disk so that it travels in several pieces; then the
    # transfer is cut half way: the source is back, running, with its disk intact
    a.power_off(inst)
    disk = a.paths.disk(inst, "disk")
    import subprocess

    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -q -P 0x5a 8M 16M", str(disk)],
                   check=True)
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    a.power_on(CTX, inst, NET)
    boot_2, _m = next_boot(a, inst, known_boots=1)
    _mig2, data2 = sequences.cold_prepare(a, b, CTX, inst, BIG, RESIZE)
    with pytest.raises((InjectedFault, DiskTransferError)):
        sequences.cold_transfer(a, b, CTX, inst, BIG, data2, RESIZE, dest=b.qconf.my_ip,
                                network_info=NET, progress=CutMidway())
    assert inst_dir.is_dir() and not a.paths.resize_dir(inst).exists()
    assert a.get_info(inst).state is PowerState.RUNNING
    boot_3, marker_3 = next_boot(a, inst, known_boots=2)
    assert boot_3 not in (boot_1, boot_2) and marker_3 == marker
    b.abort_migrate_disk_target(CTX, inst, data2)
    assert not b.paths.instance_dir(inst).exists()
    a.power_off(inst)
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == digest
