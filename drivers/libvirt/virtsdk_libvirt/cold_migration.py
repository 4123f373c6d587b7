"""The libvirt half of cold migration / resize (chain: docs/flows.md).

The steps themselves (receiver, refusal to shrink, ``<dir>_resize``, transfer,
verification, revert, confirm) and their guarantee are the SDK's
:class:`virtsdk.localdisk.coldmigration.ColdMigration`; ``LibvirtDriver`` builds one with
a :class:`LibvirtGuests`, which does what only libvirt can: is there a domain, keep
its definition next to the disks (``libvirt.xml``), power it off, define it again
and start it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import libvirt

from virtsdk.exceptions import Invalid
from virtsdk.localdisk.coldmigration import ColdMigration, DiskMigrationSettings
from virtsdk.objects import DiskInfo, Flavor, ImageMeta, Instance, NetworkInfo
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.guest import Guest

if TYPE_CHECKING:
    from virtsdk_libvirt.driver import LibvirtDriver

__all__ = ["DOMAIN_XML", "ColdMigration", "LibvirtGuests", "cold_migration_for",
           "save_domain_xml"]

#: The domain definition kept in the instance directory, used to redefine the guest
#: on revert if libvirt lost it.
DOMAIN_XML = "libvirt.xml"


def save_domain_xml(xml: str, inst_dir: Path) -> None:
    """Keep the persistent definition next to the disks (``libvirt.xml``), so the
    guest can be defined again from its directory alone."""
    xmlutil.parse(xml)  # refuse to keep anything we could not parse back
    tmp = inst_dir / (DOMAIN_XML + ".tmp")
    tmp.write_text(xml, encoding="utf-8")
    os.replace(tmp, inst_dir / DOMAIN_XML)


class LibvirtGuests:
    """:class:`virtsdk.localdisk.coldmigration.GuestHost` for one libvirt host."""

    def __init__(self, driver: LibvirtDriver) -> None:
        self.drv = driver

    def has_guest(self, instance: Instance) -> bool:
        return self.drv._find(instance) is not None

    def is_running(self, instance: Instance) -> bool:
        return bool(self.drv._guest(instance).is_active())

    def instance_disks(self, instance: Instance) -> list[DiskInfo]:
        return self.drv.get_instance_disk_info(instance)

    def save_definition(self, instance: Instance) -> None:
        guest = self.drv._guest(instance)
        save_domain_xml(guest.xml(libvirt.VIR_DOMAIN_XML_INACTIVE),
                        self.drv._paths.instance_dir(instance))

    def power_off_guest(self, instance: Instance, timeout: int, retry_interval: int) -> None:
        self.drv._guest(instance).power_off(
            timeout, retry_interval or self.drv.lv_conf.shutdown_retry_interval)

    def restore_guest(self, instance: Instance, start: bool) -> None:
        dom = self.drv._find(instance)
        if dom is None:
            saved = self.drv._paths.instance_dir(instance) / DOMAIN_XML
            if not saved.is_file():
                raise Invalid(f"instance {instance.uuid} has no saved definition on "
                              f"{self.drv.host}")
            dom = self.drv._host.define(xmlutil.to_string(xmlutil.parse(saved.read_bytes())))
        if start:
            Guest(dom).start(self.drv.lv_conf.boot_timeout)

    def remove_guest(self, instance: Instance) -> None:
        self.drv._remove_domain(instance)

    def build_guest(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                    network_info: NetworkInfo, power_on: bool) -> None:
        self.drv._define_and_start(instance, flavor, image_meta, network_info, power_on)


def cold_migration_for(driver: LibvirtDriver) -> ColdMigration:
    """The SDK's cold-migration steps wired to ``driver``'s host."""
    return ColdMigration(
        driver.name, driver.host, driver.conf, LibvirtGuests(driver), driver._paths,
        driver._image_cache, driver._local_disks(),
        DiskMigrationSettings.from_group(driver.lv_conf))
