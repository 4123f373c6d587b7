"""The libvirt half of cold migration / resize (chain: docs/flows.md).

The steps themselves (receiver, refusal to shrink, ``<dir>_resize``, transfer,
verification, revert, confirm) and their guarantee are the SDK's
:class:`virtsdk.localdisk.coldmigration.ColdMigration`; ``LibvirtDriver`` builds one with
a :class:`LibvirtGuests`, which does what only libvirt can: is there a domain, keep
its definition next to the disks (``libvirt.xml``), power it off, define it again
and start it.  :class:`LibvirtGuests` is built from explicit, typed dependencies
(the hostname, the libvirt :class:`~virtsdk_libvirt.host.Host`, the instance paths,
the ``[libvirt]`` options and four of the driver's domain operations), as
:class:`virtsdk_libvirt.live_migration.LiveMigrator` is; it never sees the driver.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import libvirt
from oslo_config import cfg

from virtsdk.exceptions import Invalid
from virtsdk.localdisk.coldmigration import ColdMigration
from virtsdk.objects import DiskInfo, Flavor, ImageMeta, Instance, NetworkInfo
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.guest import Guest
from virtsdk_libvirt.host import Host
from virtsdk_libvirt.paths import InstancePaths

__all__ = ["DOMAIN_XML", "ColdMigration", "LibvirtGuests", "save_domain_xml"]

#: ``build(instance, flavor, image_meta, network_info, power_on)``: define the domain
#: for the disks now in the instance directory and start it when asked
BuildGuest = Callable[[Instance, Flavor, ImageMeta, NetworkInfo, bool], None]

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
    """:class:`virtsdk.localdisk.coldmigration.GuestHost` for one libvirt host.

    ``lookup`` / ``find`` give the instance's domain (``lookup`` raising
    InstanceNotFound, ``find`` returning None); ``disk_info`` describes its disks;
    ``remove`` forces its domain off and undefines it; ``build`` defines and starts
    it (:data:`BuildGuest`)."""

    def __init__(
        self,
        hostname: str,
        host: Host,
        paths: InstancePaths,
        lv_conf: cfg.ConfigOpts.GroupAttr,
        *,
        lookup: Callable[[Instance], libvirt.virDomain],
        find: Callable[[Instance], libvirt.virDomain | None],
        disk_info: Callable[[Instance], list[DiskInfo]],
        remove: Callable[[Instance], None],
        build: BuildGuest,
    ) -> None:
        self.hostname = hostname
        self._host = host
        self._paths = paths
        self.lv_conf = lv_conf  # the [libvirt] group of conf (oslo.config GroupAttr)
        self._lookup = lookup
        self._find = find
        self._disk_info = disk_info
        self._remove = remove
        self._build = build

    def _guest(self, instance: Instance) -> Guest:
        return Guest(self._lookup(instance))

    def has_guest(self, instance: Instance) -> bool:
        return self._find(instance) is not None

    def is_running(self, instance: Instance) -> bool:
        return bool(self._guest(instance).is_active())

    def instance_disks(self, instance: Instance) -> list[DiskInfo]:
        return self._disk_info(instance)

    def save_definition(self, instance: Instance) -> None:
        guest = self._guest(instance)
        save_domain_xml(guest.xml(libvirt.VIR_DOMAIN_XML_INACTIVE),
                        self._paths.instance_dir(instance))

    def power_off_guest(self, instance: Instance, timeout: int, retry_interval: int) -> None:
        self._guest(instance).power_off(
            timeout, retry_interval or self.lv_conf.shutdown_retry_interval)

    def restore_guest(self, instance: Instance, start: bool) -> None:
        dom = self._find(instance)
        if dom is None:
            saved = self._paths.instance_dir(instance) / DOMAIN_XML
            if not saved.is_file():
                raise Invalid(f"instance {instance.uuid} has no saved definition on "
                              f"{self.hostname}")
            dom = self._host.define(xmlutil.to_string(xmlutil.parse(saved.read_bytes())))
        if start:
            Guest(dom).start(self.lv_conf.boot_timeout)

    def remove_guest(self, instance: Instance) -> None:
        self._remove(instance)

    def build_guest(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                    network_info: NetworkInfo, power_on: bool) -> None:
        self._build(instance, flavor, image_meta, network_info, power_on)
