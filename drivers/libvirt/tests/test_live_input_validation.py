"""Hostile input to the live-migration methods is refused before any libvirt call.

The driver points at an address nobody answers on, and every way of opening a libvirt
connection is replaced by a tripwire: a test fails if the code even tries.
"""

from __future__ import annotations

from unittest import mock

import libvirt
import pytest
from oslo_config import cfg
from virtsdk_libvirt.driver import LibvirtDriver
from virtsdk_libvirt.live_migration.checks import CHECK_FILE_PREFIX
from virtsdk_libvirt.migrate_data import LibvirtLiveMigrateData

from virtsdk.context import get_admin_context
from virtsdk.exceptions import Invalid, InvalidHostname, UnsafePath
from virtsdk.objects import Flavor, Instance, LiveMigrateData, NetworkInfo
from virtsdk.plugins import register_opts


@pytest.fixture
def driver(tmp_path, monkeypatch):
    conf = cfg.ConfigOpts()
    register_opts(conf, LibvirtDriver)
    conf([], default_config_files=[])
    conf.set_override("connection_uri", "qemu+tcp://192.0.2.1/system", "libvirt")
    conf.set_override("instances_path", str(tmp_path / "instances"), "libvirt")
    conf.set_override("my_ip", "192.0.2.10", "libvirt")
    trip = mock.Mock(side_effect=AssertionError("libvirt was called"))
    for name in ("open", "openReadOnly", "openAuth"):
        monkeypatch.setattr(libvirt, name, trip)
    drv = LibvirtDriver(conf, "hosta")
    monkeypatch.setattr(drv._host, "get_connection", trip)  # noqa: SLF001
    drv.tripwire = trip
    (tmp_path / "instances").mkdir()
    return drv


@pytest.fixture
def instance():
    return Instance(name="vm1", flavor=Flavor("m1", 128, 1, 0))


def _migrate(driver, instance, dest, data):
    post, recover = mock.Mock(), mock.Mock()
    with pytest.raises(Invalid) as info:
        driver.live_migration(get_admin_context(), instance, dest, post, recover,
                              migrate_data=data)
    post.assert_not_called()
    recover.assert_not_called()
    driver.tripwire.assert_not_called()
    return info.value


@pytest.mark.parametrize("dest", [
    "hostb;reboot", "hostb/system?socket=/tmp/x", "user@hostb", "host b", "", "-hostb",
    "hostb:16509", "../hostb", "a" * 64,
])
def test_hostile_destination_hostname(driver, instance, dest):
    exc = _migrate(driver, instance, dest, LiveMigrateData())
    assert isinstance(exc, InvalidHostname)


def test_hostile_target_address_from_destination(driver, instance):
    exc = _migrate(driver, instance, "hostb",
                   LiveMigrateData(target_connect_addr="hostb/system?x=1"))
    assert isinstance(exc, InvalidHostname)


@pytest.mark.parametrize("field,value", [
    ("graphics_listen_addr_vnc", "0.0.0.0 -vnc"),
    ("serial_listen_addr", "a'b"),
])
def test_hostile_listen_address_from_destination(driver, instance, field, value):
    exc = _migrate(driver, instance, "hostb", LiveMigrateData(**{field: value}))
    assert isinstance(exc, InvalidHostname)


@pytest.mark.parametrize("path", ["../../etc", "/etc", "relative/dir", "/a/../etc"])
def test_hostile_destination_directory(driver, instance, path):
    _migrate(driver, instance, "hostb",
             LibvirtLiveMigrateData(dest_instance_dir=path))


@pytest.mark.parametrize("rel", ["../../etc", "/etc", "..", "x/../../y", "a\x00b"])
def test_traversal_in_instance_relative_path(driver, instance, tmp_path, rel):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafePath):
        driver.pre_live_migration(get_admin_context(), instance, NetworkInfo(), [],
                                  LiveMigrateData(instance_relative_path=rel,
                                                  is_shared_instance_path=False))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    driver.tripwire.assert_not_called()


def test_relative_path_of_another_instance_is_refused(driver, instance, tmp_path):
    other = Instance(name="vm2", flavor=instance.flavor)
    with pytest.raises(UnsafePath):
        driver.pre_live_migration(get_admin_context(), instance, NetworkInfo(), [],
                                  LiveMigrateData(instance_relative_path=other.uuid))
    assert not (tmp_path / "instances" / other.uuid).exists()
    assert not (tmp_path / "instances" / instance.uuid).exists()


def test_check_cleanup_ignores_foreign_file_names(driver, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    own = tmp_path / "instances" / f"{CHECK_FILE_PREFIX}x"
    own.write_text("")
    for name in ("../victim", f"{CHECK_FILE_PREFIX}/../../victim", str(victim)):
        driver.cleanup_live_migration_destination_check(
            get_admin_context(), LiveMigrateData(filename=name))
    assert victim.read_text() == "keep"
    driver.cleanup_live_migration_destination_check(
        get_admin_context(), LiveMigrateData(filename=own.name))
    assert not own.exists()
