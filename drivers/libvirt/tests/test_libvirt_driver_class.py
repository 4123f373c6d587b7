"""The driver as the SDK sees it: found by entry point, options in [libvirt],
capabilities and the feature matrix."""

from __future__ import annotations

from oslo_config import cfg
from virtsdk_libvirt import config
from virtsdk_libvirt.driver import LibvirtDriver

from virtsdk.driver import ComputeDriver
from virtsdk.plugins import COMPUTE_DRIVERS, load


def test_found_by_entry_point() -> None:
    assert load(COMPUTE_DRIVERS, "libvirt", ComputeDriver) is LibvirtDriver


def test_options_live_in_the_libvirt_group_with_the_live_ones() -> None:
    names = {o.dest for o in LibvirtDriver.list_opts()}
    assert {"connection_uri", "virt_type", "instances_path", "image_cache_path", "my_ip",
            "host_exec_prefix", "disk_transport",
            "shutdown_retry_interval"} <= names
    assert len(names) == len(LibvirtDriver.list_opts())  # no duplicates
    conf = cfg.ConfigOpts()
    driver = load(COMPUTE_DRIVERS, "libvirt", ComputeDriver)(conf, "h1")
    assert isinstance(driver, LibvirtDriver)
    assert conf.libvirt.virt_type == "qemu" and conf.libvirt.disk_transport == "auto"
    assert conf.libvirt.cpu_mode == "maximum"
    assert driver._paths.image_cache == driver._paths.root / "_base"


def test_a_missing_live_module_leaves_the_own_options(monkeypatch) -> None:
    import sys

    import virtsdk_libvirt.live_migration as live_pkg

    monkeypatch.setitem(sys.modules, "virtsdk_libvirt.live_migration.opts", None)
    monkeypatch.delattr(live_pkg, "opts")
    assert [o.dest for o in config.list_opts()] == [o.dest for o in config.libvirt_opts]


def test_capabilities_and_feature_matrix() -> None:
    caps = LibvirtDriver.capabilities
    assert caps.supports_cold_migration and caps.supports_resize and caps.has_imagecache
    assert not caps.supports_migrate_to_same_host
    assert set(caps.image_formats) == {"raw", "qcow2"}
    implemented = set(LibvirtDriver.implemented_methods())
    assert {"get_instance_disk_info", "prepare_migrate_disk_target",
            "migrate_disk_and_power_off", "finish_migration", "confirm_migration",
            "finish_revert_migration"} <= implemented
