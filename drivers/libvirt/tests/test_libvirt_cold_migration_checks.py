"""Cold-migration input checks that need no hypervisor: everything here is refused
before a guest or a file is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg
from virtsdk_libvirt.cold_migration import ColdMigration
from virtsdk_libvirt.driver import LibvirtDriver

from virtsdk.exceptions import (
    DiskTransferError,
    Invalid,
    InvalidHostname,
    TransferIntegrityError,
    UnsafePath,
)
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    ImageMeta,
    Instance,
    Migration,
    NetworkInfo,
)
from virtsdk.plugins import register_opts
from virtsdk.states import MigrationType
from virtsdk.transfer.base import ReceivedFile, SentFile, TransferResult


@pytest.fixture
def driver(tmp_path: Path) -> LibvirtDriver:
    conf = cfg.ConfigOpts()
    register_opts(conf, LibvirtDriver)
    conf.set_override("connection_uri", "test:///default", group="libvirt")
    conf.set_override("instances_path", str(tmp_path / "instances"), group="libvirt")
    return LibvirtDriver(conf, "h1")


@pytest.fixture
def instance() -> Instance:
    return Instance(name="vm", flavor=Flavor("small", 256, 1, 1))


def disk_info(name: str = "disk", checksum: str = "") -> DiskInfo:
    return DiskInfo(path=name, type="qcow2", virt_disk_size=1 << 30, disk_size=1 << 20,
                    checksum=checksum)


def test_sent_disks_must_all_arrive_at_full_size(tmp_path: Path) -> None:
    (tmp_path / "disk").write_bytes(b"x" * 1000)
    ok = TransferResult("local", files=[SentFile("disk", 1000, digest="crc32:1")])
    (out,) = ColdMigration._sent_disks([disk_info()], ok, tmp_path)
    assert out.checksum == "crc32:1" and out.path == "disk"
    with pytest.raises(TransferIntegrityError, match="did not send"):
        ColdMigration._sent_disks([disk_info()], TransferResult("local"), tmp_path)
    short = TransferResult("local", files=[SentFile("disk", 999)])
    with pytest.raises(TransferIntegrityError, match="999 bytes sent of 1000"):
        ColdMigration._sent_disks([disk_info()], short, tmp_path)


def test_received_disks_are_checked(driver: LibvirtDriver, instance: Instance) -> None:
    inst_dir = driver._paths.instance_dir(instance)
    inst_dir.mkdir(parents=True)
    (inst_dir / "disk").write_bytes(b"data")
    good = {"disk": ReceivedFile("disk", str(inst_dir / "disk"), 4, digest="sha256:aa")}
    driver._cold._verify(inst_dir, [disk_info(checksum="sha256:aa")], good)
    with pytest.raises(TransferIntegrityError, match="digest"):
        driver._cold._verify(inst_dir, [disk_info(checksum="sha256:bb")], good)
    with pytest.raises(TransferIntegrityError, match="did not arrive"):
        driver._cold._verify(inst_dir, [disk_info("disk.local")], good)
    with pytest.raises(UnsafePath):
        driver._cold._verify(inst_dir, [disk_info("../../etc/passwd")], good)


@pytest.mark.parametrize("dest", ["evil;rm -rf /", "host name", "a@b", "h/../x", ""])
def test_bad_destination_hostname_is_refused_first(driver: LibvirtDriver,
                                                   instance: Instance, dest: str) -> None:
    with pytest.raises(InvalidHostname):
        driver.migrate_disk_and_power_off(None, instance, dest, instance.flavor,  # type: ignore[arg-type]
                                          NetworkInfo(), migrate_data=ColdMigrateData(
                                              transport="local", ticket={"x": 1}))


def test_migration_without_destination_data_is_refused(driver: LibvirtDriver,
                                                       instance: Instance) -> None:
    with pytest.raises(Invalid, match="ColdMigrateData"):
        driver.migrate_disk_and_power_off(None, instance, "198.18.1.2",  # type: ignore[arg-type]
                                          instance.flavor, NetworkInfo())


def test_finish_without_a_prepared_transfer_is_refused(driver: LibvirtDriver,
                                                       instance: Instance) -> None:
    mig = Migration(instance_uuid=instance.uuid, source_host="a",
                    migration_type=MigrationType.RESIZE)
    with pytest.raises(DiskTransferError, match="no disk transfer was prepared"):
        driver.finish_migration(None, mig, instance, [disk_info()],  # type: ignore[arg-type]
                                NetworkInfo(), ImageMeta(id="i"), True)
    assert not driver._paths.instance_dir(instance).exists()
