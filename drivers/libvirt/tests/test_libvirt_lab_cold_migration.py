"""The libvirt driver on the real two-host lab: boot, resize to the other host,
revert, confirm, failed transfers, refused shrinking, power-off.

Guest boots are the expensive part (emulation), so each test walks through several
steps with the same guest; the whole module boots the test guest five times.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from virtsdk_lab.guest import ConsoleLog
from virtsdk_libvirt.driver import LibvirtDriver
from virtsdk_libvirt.imagecache import ImageUnavailable

from tests.audit_check import assert_holds
from virtsdk.context import get_admin_context
from virtsdk.driver import HELD_INCOMING, HELD_INSTANCE
from virtsdk.exceptions import (
    DestinationDiskExists,
    DiskTransferError,
    InjectedFault,
    InstanceExists,
    ResizeShrinkNotAllowed,
)
from virtsdk.objects import (
    ColdMigrateData,
    Flavor,
    ImageMeta,
    Instance,
    NetworkInfo,
    TransferProgress,
)
from virtsdk.states import PowerState
from virtsdk.testing import sequences

from .libvirt_lab import make_driver

pytestmark = pytest.mark.lab

GiB = 1024 ** 3
BOOT_TIMEOUT = 120
CTX = get_admin_context()
NET = NetworkInfo()
SMALL = Flavor("small", 256, 1, 1)
BIG = Flavor("big", 256, 1, 2)
RESIZE = "supports_resize"


@pytest.fixture(scope="module")
def image_meta(guest_image: Any) -> ImageMeta:
    """The lab's kernel + initramfs guest as an image (no disk: the root disk starts
    blank and the guest writes its marker on it at first boot)."""
    return ImageMeta(id=f"vsdk-guest-{guest_image.key}", name="vsdk test guest",
                     properties={"kernel": str(guest_image.kernel),
                                 "initrd": str(guest_image.initrd),
                                 "cmdline": guest_image.cmdline()})


def console(driver: LibvirtDriver, instance: Instance) -> ConsoleLog:
    return ConsoleLog(driver._paths.console_log(instance))


def boot_and_marker(driver: LibvirtDriver, instance: Instance,
                    known_boots: int = 0) -> tuple[str, str]:
    """Wait for the next boot's first heartbeat; return (boot id, marker token)."""
    log = console(driver, instance)
    log.wait_for(r"BOOT [0-9a-f]+", BOOT_TIMEOUT)
    while len(log.boot_ids()) <= known_boots:
        log.wait_for(r"BOOT [0-9a-f]+", BOOT_TIMEOUT, start=len(log.text()))
    boot_id = log.boot_ids()[-1]
    log.wait_for_heartbeat(BOOT_TIMEOUT, boot_id=boot_id)
    marker = log.marker()
    assert marker is not None
    return boot_id, marker


def disk_marker(path: Path) -> str:
    """The marker the guest wrote on the first sector of a disk file (any format)."""
    out = path.with_name(path.name + ".sector0")
    subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1",
                    f"if={path}", f"of={out}"], check=True, capture_output=True)
    line = out.read_bytes().split(b"\n", 1)[0].decode()
    out.unlink()
    assert line.startswith("VSDKMARK "), line
    return line.split(" ", 1)[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lifecycle_without_booting(lab_drivers: list[LibvirtDriver],
                                   image_meta: ImageMeta) -> None:
    a, _b = lab_drivers
    res = a.get_available_resource()
    assert res.hostname == a.host and res.hypervisor_hostname == a.host
    assert res.vcpus > 0 and res.memory_mb > 0 and res.local_gb > 0
    assert res.hypervisor_type == "QEMU" and res.cpu_info["arch"] == "x86_64"
    inst = Instance(name="lifecycle", flavor=Flavor("f", 128, 1, 1, ephemeral_gb=1))
    a.spawn(CTX, inst, image_meta, NET, power_on=False)
    assert "lifecycle" in a.list_instances()
    assert a.instance_exists(inst)
    assert a.get_info(inst).state is PowerState.SHUTDOWN
    disks = {d.path: d for d in a.get_instance_disk_info(inst)}
    assert set(disks) == {"disk", "disk.local"}
    assert disks["disk"].virt_disk_size == GiB and disks["disk"].target == "vda"
    before = sorted(p.name for p in a._paths.instance_dir(inst).iterdir())
    with pytest.raises(InstanceExists):
        a.spawn(CTX, inst, image_meta, NET)
    assert sorted(p.name for p in a._paths.instance_dir(inst).iterdir()) == before
    a.destroy(CTX, inst, NET)
    assert not a.instance_exists(inst) and not a._paths.instance_dir(inst).exists()
    a.destroy(CTX, inst, NET)  # idempotent


def test_failed_spawn_leaves_nothing_behind(lab_drivers: list[LibvirtDriver],
                                            image_meta: ImageMeta, tmp_path: Path) -> None:
    a, _b = lab_drivers
    broken = ImageMeta(id="broken-kernel", properties={
        **image_meta.properties, "kernel": str(tmp_path / "no-such-kernel")})
    inst = Instance(name="never", flavor=SMALL)
    with pytest.raises(ImageUnavailable, match="kernel"):
        a.spawn(CTX, inst, broken, NET)
    assert not a.instance_exists(inst)
    assert not a._paths.instance_dir(inst).exists()


def test_resize_to_other_host_revert_and_confirm(lab: Any, lab_drivers: list[LibvirtDriver],
                                                 image_meta: ImageMeta) -> None:
    # the first migration uses the network stream transport explicitly, the second
    # one 'auto' (which finds the lab's instance paths visible and copies locally)
    a = make_driver(lab.hosts[0], disk_transport="stream")
    b = make_driver(lab.hosts[1], disk_transport="stream")
    inst = Instance(name="resize-me", flavor=SMALL)
    a.spawn(CTX, inst, image_meta, NET)
    boot_a, marker = boot_and_marker(a, inst)

    # -- resize onto host B ------------------------------------------------------------
    mig, data = sequences.cold_prepare(a, b, CTX, inst, BIG, RESIZE)
    assert data.transport == "stream" and data.ticket["address"] == b.lv_conf.my_ip
    samples: list[TransferProgress] = []
    # timeout 0: the guest is forced off at once (it never sees a shutdown request)
    sent = sequences.cold_transfer(a, b, CTX, inst, BIG, data, RESIZE, dest=b.lv_conf.my_ip,
                                   network_info=NET, timeout=0, progress=samples.append)
    assert "SHUTDOWN" not in ConsoleLog(a._paths.resize_dir(inst) / "console.log").text()
    assert [d.path for d in sent] == ["disk"]
    assert a.get_info(inst).state is PowerState.SHUTDOWN
    assert a._paths.resize_dir(inst).is_dir() and not a._paths.instance_dir(inst).exists()
    done = [s.bytes_done for s in samples]
    assert done == sorted(done) and samples and samples[-1].bytes_done == samples[-1].bytes_total

    sequences.cold_finish(b, CTX, inst, mig, sent, BIG, RESIZE, network_info=NET,
                          image=image_meta)
    assert b.get_info(inst).state is PowerState.RUNNING
    boot_b, marker_b = boot_and_marker(b, inst)
    assert marker_b == marker and console(b, inst).markers()[-1].how == "found"
    assert boot_b != boot_a
    assert {d.path: d.virt_disk_size for d in b.get_instance_disk_info(inst)} == {
        "disk": 2 * GiB}

    # -- revert: B drops its copy, A gets the original back --------------------------
    sequences.cold_revert(a, b, CTX, inst, mig, RESIZE, network_info=NET)
    assert not b.instance_exists(inst) and not b._paths.instance_dir(inst).exists()
    assert inst.flavor == SMALL
    assert a.get_info(inst).state is PowerState.RUNNING
    boot_a2, marker_a2 = boot_and_marker(a, inst, known_boots=1)
    assert boot_a2 != boot_a and marker_a2 == marker
    assert {d.path: d.virt_disk_size for d in a.get_instance_disk_info(inst)} == {"disk": GiB}
    assert not a._paths.resize_dir(inst).exists()

    # -- resize again (auto transport, B left stopped), then confirm -----------------
    a2, b2 = lab_drivers
    # with a deadline the guest shuts down cleanly (its ACPI handler logs SHUTDOWN)
    mig2, sent2, _data2 = sequences.cold_send(a2, b2, CTX, inst, BIG, RESIZE,
                                              dest=b2.lv_conf.my_ip, network_info=NET,
                                              timeout=60, retry_interval=5)
    assert "SHUTDOWN" in ConsoleLog(a2._paths.resize_dir(inst) / "console.log").text()
    sequences.cold_finish(b2, CTX, inst, mig2, sent2, BIG, RESIZE, power_on=False,
                          network_info=NET, image=image_meta)
    assert b2.get_info(inst).state is PowerState.SHUTDOWN
    a2.confirm_migration(CTX, mig2, inst, NET)
    assert not a2.instance_exists(inst)
    assert not a2._paths.resize_dir(inst).exists()
    assert not a2._paths.instance_dir(inst).exists()
    b_disk = b2._paths.disk(inst, "disk")
    assert disk_marker(b_disk) == marker
    assert b2.get_instance_disk_info(inst)[0].virt_disk_size == 2 * GiB


class FailAfterFirstChunk:
    """A progress callback that fails the transfer part way through the disk."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, progress: TransferProgress) -> None:
        self.calls += 1
        if progress.bytes_done < progress.bytes_total:
            raise InjectedFault(f"transfer cut after {progress.bytes_done} bytes")


def test_failures_leave_the_source_startable(lab: Any, lab_drivers: list[LibvirtDriver],
                                             image_meta: ImageMeta, tmp_path: Path) -> None:
    a, b = lab_drivers
    inst = Instance(name="survivor", flavor=BIG)
    a.spawn(CTX, inst, image_meta, NET)
    boot_1, marker = boot_and_marker(a, inst)
    log = console(a, inst)
    inst_dir = a._paths.instance_dir(inst)

    # -- shrinking is refused before anything is touched: the guest keeps running ----
    mig, data = sequences.cold_prepare(a, b, CTX, inst, SMALL, RESIZE)
    with pytest.raises(DestinationDiskExists):
        b.prepare_migrate_disk_target(CTX, mig, inst, SMALL)
    listing = sorted(p.name for p in inst_dir.iterdir())
    with pytest.raises(ResizeShrinkNotAllowed):
        sequences.cold_transfer(a, b, CTX, inst, SMALL, data, RESIZE, dest=b.lv_conf.my_ip,
                                network_info=NET)
    assert a.get_info(inst).state is PowerState.RUNNING
    assert sorted(p.name for p in inst_dir.iterdir()) == listing
    assert not a._paths.resize_dir(inst).exists()
    seq = log.last_heartbeat().seq
    log.wait_for_heartbeat(BOOT_TIMEOUT, boot_id=boot_1, after_seq=seq)  # still the same boot

    # -- the receiver goes away before the source sends: the source restarts --------
    b.abort_migrate_disk_target(CTX, inst, data)
    assert not b._paths.instance_dir(inst).exists()
    with pytest.raises(DiskTransferError):
        sequences.cold_transfer(a, b, CTX, inst, BIG, data, RESIZE, dest=b.lv_conf.my_ip,
                                network_info=NET, timeout=2, retry_interval=1)
    assert inst_dir.is_dir() and not a._paths.resize_dir(inst).exists()
    assert a.get_info(inst).state is PowerState.RUNNING
    boot_2, marker_2 = boot_and_marker(a, inst, known_boots=1)
    assert boot_2 != boot_1 and marker_2 == marker
    assert log.markers()[-1].how == "found"

    # -- clean power-off, then transfers cut half way (network stream and local
    # copy): the source stays stopped and intact, the destination is cleaned --------
    shutdowns = log.text().count("SHUTDOWN")
    a.power_off(inst, timeout=60, retry_interval=5)
    assert a.get_info(inst).state is PowerState.SHUTDOWN
    assert log.text().count("SHUTDOWN") == shutdowns + 1
    # 32 MiB of random data in the overlay, so that the disk travels in many pieces
    noise = tmp_path / "noise"
    noise.write_bytes(os.urandom(32 * 1024 * 1024))
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -q -s {noise} 8M 32M",
                    str(a._paths.disk(inst, "disk"))], check=True)
    digest = sha256(a._paths.disk(inst, "disk"))
    for transport in ("stream", "local"):
        # the local copy reports progress per data run only in its userspace mode
        extra = {"transport_local.method": "userspace"} if transport == "local" else {}
        a_t = make_driver(lab.hosts[0], disk_transport=transport, **extra)
        b_t = make_driver(lab.hosts[1], disk_transport=transport, **extra)
        _mig3, data3 = sequences.cold_prepare(a_t, b_t, CTX, inst, BIG, RESIZE)
        assert data3.transport == transport
        cut = FailAfterFirstChunk()
        with pytest.raises((InjectedFault, DiskTransferError)) as failed:
            sequences.cold_transfer(a_t, b_t, CTX, inst, BIG, data3, RESIZE,
                                    dest=b_t.lv_conf.my_ip, network_info=NET, progress=cut)
        chain = [failed.value, failed.value.__cause__, failed.value.__context__]
        assert any(isinstance(e, InjectedFault) for e in chain) or \
            "transfer cut after" in str(failed.value), (transport, chain)
        assert a.get_info(inst).state is PowerState.SHUTDOWN
        assert inst_dir.is_dir() and not a._paths.resize_dir(inst).exists()
        assert sha256(a._paths.disk(inst, "disk")) == digest
        assert disk_marker(a._paths.disk(inst, "disk")) == marker
        assert_holds(a_t, {inst.uuid: [HELD_INSTANCE]})  # the source: its guest only
        assert_holds(b_t, {inst.uuid: [HELD_INCOMING]})  # the receive, until aborted
        if transport == "local":
            # the audit's clean-up of a receive whose record is lost (another
            # process): a driver without the ticket removes the partial copy
            orphan = make_driver(lab.hosts[1], disk_transport=transport)
            orphan.abort_migrate_disk_target(CTX, inst, ColdMigrateData())
            assert_holds(orphan, {}, [inst.uuid])
            assert_holds(a_t, {inst.uuid: [HELD_INSTANCE]})
        b_t.abort_migrate_disk_target(CTX, inst, data3)
        assert not b._paths.instance_dir(inst).exists(), transport
        assert_holds(b_t, {}, [inst.uuid])  # nothing left behind on the destination
    # and the source still starts
    a.power_on(CTX, inst, NET)
    assert a.get_info(inst).state is PowerState.RUNNING


def test_finish_refuses_an_overlay_of_a_foreign_backing_file(
        lab_drivers: list[LibvirtDriver], image_meta: ImageMeta, tmp_path: Path) -> None:
    """A received qcow2 whose backing file is not this image's base (here: a file
    that could hold anyone's data) is refused, not started."""
    a, b = lab_drivers
    inst = Instance(name="crafted", flavor=SMALL)
    mig, data = sequences.cold_prepare(a, b, CTX, inst, SMALL)
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"not yours" * 1000)
    crafted = tmp_path / "disk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(secret),
                    str(crafted), "1G"], check=True)
    from virtsdk.transfer.base import SendFile, load_transport

    load_transport("local", a.conf).send([SendFile(str(crafted), "disk")], data.ticket)
    sent = [d for d in _describe(a, crafted)]
    with pytest.raises(Exception, match="overlay|backing"):
        b.finish_migration(CTX, mig, inst, sent, NET, image_meta, resize_instance=False)
    assert not b.instance_exists(inst)


def _describe(driver: LibvirtDriver, path: Path) -> list[Any]:
    from virtsdk_libvirt import disk

    from virtsdk.objects import DiskInfo

    info = disk.info(path)
    return [DiskInfo(path="disk", type=info.format, virt_disk_size=info.virtual_size,
                     disk_size=info.actual_size)]


def test_qcow2_overlay_travels_without_its_base(lab_drivers: list[LibvirtDriver],
                                                image_meta: ImageMeta,
                                                tmp_path: Path) -> None:
    """With a disk image, the root disk is a qcow2 overlay of the host's cached base:
    only the overlay is sent, and the destination rebases it onto its own cache."""
    a, b = lab_drivers
    base = tmp_path / "base.raw"
    with open(base, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
        fh.seek(1024 * 1024)
        fh.write(b"BASE-IMAGE-CONTENT\n" * 1000)
    image = ImageMeta(id=f"with-disk-{image_meta.id}", disk_format="raw",
                      location=str(base), properties=dict(image_meta.properties))
    inst = Instance(name="overlay", flavor=SMALL)
    a.spawn(CTX, inst, image, NET, power_on=False)
    a_disk = a.get_instance_disk_info(inst)[0]
    a_base = a._image_cache.path_of(image, "disk")
    assert a_disk.type == "qcow2" and a_disk.backing_file == a_base.name
    mig, sent, _data = sequences.cold_send(a, b, CTX, inst, BIG, RESIZE,
                                           dest=b.lv_conf.my_ip, network_info=NET)
    sequences.cold_finish(b, CTX, inst, mig, sent, BIG, RESIZE, power_on=False,
                          network_info=NET, image=image)
    b_disk = b._paths.disk(inst, "disk")
    b_base = b._image_cache.path_of(image, "disk")
    assert b_base != a_base and b_base.is_file()
    from virtsdk_libvirt import disk

    info = disk.info(b_disk)
    assert info.backing_file == str(b_base)
    assert info.virtual_size == 2 * GiB
    assert b_disk.stat().st_size < 4 * 1024 * 1024  # the overlay, not the 64 MiB base
    # the base's data reads through the rebased chain on B (qemu-img dd counts the
    # skipped block in ``count``: this copies the second MiB)
    out = tmp_path / "window"
    subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=1M", "skip=1",
                    "count=2", f"if={b_disk}", f"of={out}"], check=True)
    assert out.read_bytes().startswith(b"BASE-IMAGE-CONTENT\n")
    a.confirm_migration(CTX, mig, inst, NET)
    assert a_base.is_file()  # the cache is shared by instances; confirm leaves it


def test_revert_redefines_a_lost_source_domain(lab_drivers: list[LibvirtDriver],
                                               image_meta: ImageMeta) -> None:
    """If the source's libvirt lost the definition while the instance was away, the
    revert defines it again from the kept ``libvirt.xml``; the disk is untouched."""
    a, b = lab_drivers
    inst = Instance(name="lost-definition", flavor=SMALL)
    a.spawn(CTX, inst, image_meta, NET, power_on=False)
    mig, sent, _data = sequences.cold_send(a, b, CTX, inst, BIG, RESIZE,
                                           dest=b.lv_conf.my_ip, network_info=NET)
    kept = a._paths.resize_dir(inst) / "disk"
    digest = sha256(kept)
    sequences.cold_finish(b, CTX, inst, mig, sent, BIG, RESIZE, power_on=False,
                          network_info=NET, image=image_meta)
    a._lookup(inst).undefine()
    assert not a.instance_exists(inst)
    sequences.cold_revert(a, b, CTX, inst, mig, RESIZE, power_on=False, network_info=NET)
    assert inst.flavor == SMALL
    assert a.instance_exists(inst)
    assert a.get_info(inst).state is PowerState.SHUTDOWN
    assert a._lookup(inst).UUIDString() == inst.uuid
    assert sha256(a._paths.disk(inst, "disk")) == digest
    a.finish_revert_migration(CTX, mig, inst, NET, power_on=False)  # idempotent


def test_raw_disks_resize_with_ephemeral_and_stay_sparse(lab: Any, image_meta: ImageMeta,
                                                         lab_drivers: list[LibvirtDriver]
                                                         ) -> None:
    """raw root and ephemeral disks: both sent (sparse), grown on the destination; a
    flavor that adds swap gets a fresh swap disk there (swap never travels)."""
    a = make_driver(lab.hosts[0], images_type="raw")
    b = make_driver(lab.hosts[1], images_type="raw")
    before = Flavor("raw-s", 256, 1, 1, ephemeral_gb=1)
    after = Flavor("raw-b", 256, 1, 2, ephemeral_gb=2, swap_mb=16)
    inst = Instance(name="raw-disks", flavor=before)
    a.spawn(CTX, inst, image_meta, NET, power_on=False)
    mig, sent, _data = sequences.cold_send(a, b, CTX, inst, after, RESIZE,
                                           dest=b.lv_conf.my_ip, network_info=NET)
    assert sorted(d.path for d in sent) == ["disk", "disk.local"]
    sequences.cold_finish(b, CTX, inst, mig, sent, after, RESIZE, power_on=False,
                          network_info=NET, image=image_meta)
    got = {d.path: d for d in b.get_instance_disk_info(inst)}
    assert {p: (d.type, d.virt_disk_size) for p, d in got.items()} == {
        "disk": ("raw", 2 * GiB), "disk.local": ("raw", 2 * GiB),
        "disk.swap": ("raw", 16 * 1024 * 1024)}
    assert all(d.disk_size < 64 * 1024 * 1024 for d in got.values())  # still sparse
    a.confirm_migration(CTX, mig, inst, NET)
    assert not a.instance_exists(inst)
