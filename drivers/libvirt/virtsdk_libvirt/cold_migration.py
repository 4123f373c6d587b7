"""The cold-migration / resize steps of the libvirt driver (chain: docs/flows.md).

``LibvirtDriver`` delegates its cold-migration methods to :class:`ColdMigration`::

    dest    prepare_target()        start a receiver  -> ColdMigrateData(transport, ticket)
    source  migrate_disks()         refuse shrinking, power off, dir -> <dir>_resize,
                                    send the disks (qcow2: the overlay only)
    dest    finish()                wait for the disks, verify them, rebase overlays onto
                                    this host's image cache, grow, define, start
    source  confirm()               delete <dir>_resize and the old domain
    source  revert()                <dir>_resize -> <dir>, start again
    dest    abort_target()          cancel the receiver, remove what it created

Guarantee: from the first change on the source until ``confirm``, the source keeps
a complete, startable copy of the instance (its defined domain and its disks).  A
failure in ``migrate_disks`` puts the directory back and restarts the guest if it ran.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import libvirt

from virtsdk.exceptions import (
    DestinationDiskExists,
    DiskTransferError,
    Invalid,
    NotSupported,
    PluginError,
    TransferIntegrityError,
)
from virtsdk.objects import ColdMigrateData, DiskInfo, Flavor, ImageMeta, Instance, Migration
from virtsdk.transfer.base import (
    AUTO,
    DiskTransport,
    HostEndpoint,
    SendFile,
    TransferResult,
    choose_transport,
    load_transport,
    write_probe,
)
from virtsdk.validation import validate_hostname
from virtsdk_libvirt import disk, xmlutil
from virtsdk_libvirt.guest import Guest
from virtsdk_libvirt.inventory import PROBE_PREFIX
from virtsdk_libvirt.storage import MIGRATED, check_no_shrink

if TYPE_CHECKING:
    from virtsdk.driver import TransferCallback
    from virtsdk.objects import NetworkInfo
    from virtsdk_libvirt.driver import LibvirtDriver

LOG = logging.getLogger(__name__)

#: The domain definition kept in the instance directory, used to redefine the guest
#: on revert if libvirt lost it.
DOMAIN_XML = "libvirt.xml"
LOCAL = "local"


@dataclass
class _Incoming:
    """A prepared receive on the destination, kept until finish or abort."""

    data: ColdMigrateData
    created_dir: bool


def save_domain_xml(xml: str, inst_dir: Path) -> None:
    """Keep the persistent definition next to the disks (``libvirt.xml``), so the
    guest can be defined again from its directory alone."""
    xmlutil.parse(xml)  # refuse to keep anything we could not parse back
    tmp = inst_dir / (DOMAIN_XML + ".tmp")
    tmp.write_text(xml, encoding="utf-8")
    os.replace(tmp, inst_dir / DOMAIN_XML)


class ColdMigration:
    """Cold-migration steps for one driver (one host).  Thread safe."""

    def __init__(self, driver: LibvirtDriver) -> None:
        self.drv = driver
        self._incoming: dict[str, _Incoming] = {}
        self._lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    def _transport_name(self, ticket: dict[str, Any] | None) -> str:
        name = self.drv.lv_conf.disk_transport
        if name and name != AUTO:
            return name
        return choose_transport(self.drv.conf, ticket)

    def _receiver(self) -> tuple[str, DiskTransport]:
        """The transport this destination receives with.  With ``auto`` a transport
        that is not installed or fails to load falls back to ``local``."""
        name = self._transport_name(None)
        try:
            return name, load_transport(name, self.drv.conf)
        except (PluginError, DiskTransferError) as exc:
            if self.drv.lv_conf.disk_transport != AUTO or name == LOCAL:
                raise
            LOG.warning("disk transport %s unavailable (%s); falling back to %s",
                        name, exc, LOCAL)
            return LOCAL, load_transport(LOCAL, self.drv.conf)

    def _endpoint(self) -> HostEndpoint:
        return HostEndpoint(self.drv.lv_conf.my_ip, list(self.drv._exec_prefix))

    # -- destination ---------------------------------------------------------------------

    def prepare_target(self, instance: Instance, migration: Migration) -> ColdMigrateData:
        """Destination: create the instance directory and start a receiver into it.

        Refuses (DestinationDiskExists, nothing touched) when this host already has a
        directory or a domain for the instance.
        """
        inst_dir = self.drv._paths.instance_dir(instance)
        if inst_dir.exists() or self.drv._find(instance) is not None:
            raise DestinationDiskExists(
                f"instance {instance.uuid} already has files or a domain on "
                f"{self.drv.host}; refusing to receive over them")
        name, transport = self._receiver()
        inst_dir.parent.mkdir(parents=True, exist_ok=True)
        inst_dir.mkdir()
        try:
            ticket = transport.prepare_receive(str(inst_dir), self._endpoint())
            write_probe(ticket)
        except BaseException:
            shutil.rmtree(inst_dir, ignore_errors=True)
            raise
        data = ColdMigrateData(transport=name, ticket=ticket)
        with self._lock:
            self._incoming[migration.uuid] = _Incoming(data, created_dir=True)
        return data

    def abort_target(self, instance: Instance, migrate_data: ColdMigrateData | None,
                     migration_uuid: str | None = None) -> None:
        """Destination, after a failure: stop the receiver, delete what it created and
        the directory ``prepare_target`` made (only if nothing else is in it)."""
        incoming = None
        with self._lock:
            if migration_uuid is not None:
                incoming = self._incoming.pop(migration_uuid, None)
            elif migrate_data is not None:
                for key, value in list(self._incoming.items()):
                    if value.data.ticket == migrate_data.ticket:
                        incoming = self._incoming.pop(key)
            if incoming is None:  # an orphan (the audit): the receive into its directory
                target = str(self.drv._paths.instance_dir(instance))
                for key, value in list(self._incoming.items()):
                    if value.data.ticket.get("dest_dir") == target:
                        incoming = self._incoming.pop(key)
        data = incoming.data if incoming else migrate_data
        if data is None or not data.ticket:
            self._remove_orphaned_target(instance)
            return
        transport = load_transport(data.transport, self.drv.conf)
        transport.cancel_receive(data.ticket)
        inst_dir = self.drv._paths.instance_dir(instance)
        if (incoming is None or incoming.created_dir) and inst_dir.is_dir() \
                and self.drv._find(instance) is None:
            leftovers = [n for n in os.listdir(inst_dir) if not n.startswith(".virtsdk-")]
            if not leftovers:
                shutil.rmtree(inst_dir, ignore_errors=True)

    def _remove_orphaned_target(self, instance: Instance) -> None:
        """The audit's clean-up of a receive nobody finished or aborted (this process
        lost its record): remove the instance directory only while it has no domain
        and still carries a receive's probe file, i.e. holds partial copies only."""
        inst_dir = self.drv._paths.instance_dir(instance)
        if not inst_dir.is_dir() or self.drv._find(instance) is not None:
            return
        if any(n.startswith(PROBE_PREFIX) for n in os.listdir(inst_dir)):
            LOG.warning("removing the orphaned disk receive %s", inst_dir)
            shutil.rmtree(inst_dir, ignore_errors=True)

    def finish(self, migration: Migration, instance: Instance, disk_info: list[DiskInfo],
               network_info: NetworkInfo, image_meta: ImageMeta, resize_instance: bool,
               power_on: bool) -> None:
        """Destination: wait for and verify the disks, make them usable here, grow them
        to the new flavor, define the domain and start it."""
        with self._lock:
            incoming = self._incoming.pop(migration.uuid, None)
        if incoming is None:
            raise DiskTransferError(
                f"no disk transfer was prepared on {self.drv.host} for migration "
                f"{migration.uuid}")
        data = incoming.data
        transport = load_transport(data.transport, self.drv.conf)
        received = transport.finish_receive(data.ticket, self.drv.lv_conf.disk_transfer_timeout)
        inst_dir = self.drv._paths.instance_dir(instance)
        self._verify(inst_dir, disk_info, {r.name: r for r in received})
        self._adopt_disks(inst_dir, disk_info, image_meta)
        flavor = self._new_flavor(migration, instance)
        local = self.drv._local_disks()
        if resize_instance:
            local.grow_to_flavor(inst_dir, flavor)
            local.ensure_ephemeral(instance, flavor)
        local.ensure_swap(instance, flavor)
        try:
            self.drv._define_and_start(instance, flavor, image_meta, network_info, power_on)
        except BaseException:
            self.drv._remove_domain(instance)
            raise

    @staticmethod
    def _new_flavor(migration: Migration, instance: Instance) -> Flavor:
        return migration.new_flavor or instance.new_flavor or instance.flavor

    def _verify(self, inst_dir: Path, disk_info: list[DiskInfo],
                received: dict[str, Any]) -> None:
        for info in disk_info:
            path = self.drv._paths.received(inst_dir, info.path)
            got = received.get(info.path)
            if got is None or not path.is_file():
                raise TransferIntegrityError(f"disk {info.path} did not arrive")
            if info.checksum and got.digest and info.checksum != got.digest:
                raise TransferIntegrityError(f"disk {info.path}: digest differs from source")

    def _adopt_disks(self, inst_dir: Path, disk_info: list[DiskInfo],
                     image_meta: ImageMeta) -> None:
        """Check each received disk (format, no external data) and point qcow2
        overlays at this host's copy of their base image."""
        memory_mb = self.drv.lv_conf.qemu_img_memory_mb
        for info in disk_info:
            path = self.drv._paths.received(inst_dir, info.path)
            actual = disk.info(path, memory_mb)
            if actual.format != info.type:
                raise TransferIntegrityError(
                    f"disk {info.path} arrived as {actual.format}, was sent as {info.type}")
            if actual.virtual_size != info.virt_disk_size:
                raise TransferIntegrityError(
                    f"disk {info.path}: virtual size {actual.virtual_size}, "
                    f"source had {info.virt_disk_size}")
            if actual.backing_file is None:
                continue
            base = self.drv._image_cache.base_disk(image_meta)
            if base is None or os.path.basename(actual.backing_file) != base.name:
                raise disk.UnsafeImage(
                    f"disk {info.path} is an overlay of {actual.backing_file!r}, which is "
                    f"not the base of image {image_meta.id}")
            disk.rebase_in_place(path, base, disk.RAW)

    # -- source --------------------------------------------------------------------------

    def migrate_disks(self, instance: Instance, dest: str, flavor: Flavor,
                      timeout: int, retry_interval: int,
                      migrate_data: ColdMigrateData | None,
                      progress: TransferCallback | None) -> list[DiskInfo]:
        """Source: validate, power off, keep the directory as ``<dir>_resize`` and send
        its disks.  On any failure the directory is put back and the guest restarted
        if it was running; the error is re-raised."""
        validate_hostname(dest)
        if migrate_data is None or not migrate_data.ticket:
            raise Invalid("cold migration needs the destination's ColdMigrateData")
        paths = self.drv._paths
        inst_dir, resize_dir = paths.instance_dir(instance), paths.resize_dir(instance)
        disks = self.drv.get_instance_disk_info(instance)
        check_no_shrink(disks, flavor)
        foreign = [d.path for d in disks if "/" in d.path]
        if foreign:
            raise NotSupported(self.drv.name, "cold migration of disks outside the "
                               f"instance directory ({', '.join(foreign)})")
        if resize_dir.exists():
            raise Invalid(f"{resize_dir} already exists: a previous resize of "
                          f"{instance.uuid} was not confirmed or reverted")
        transport = load_transport(self._transport_name(migrate_data.ticket), self.drv.conf)
        guest = self.drv._guest(instance)
        was_running = guest.is_active()
        self._save_domain_xml(guest, inst_dir)
        guest.power_off(timeout, retry_interval or self.drv.lv_conf.shutdown_retry_interval)
        try:
            os.rename(inst_dir, resize_dir)
            to_send = [d for d in disks if d.path in MIGRATED]
            files = [SendFile(str(resize_dir / d.path), d.path) for d in to_send]
            result = transport.send(files, migrate_data.ticket, progress)
            return self._sent_disks(to_send, result, resize_dir)
        except BaseException:
            LOG.exception("sending the disks of %s to %s failed; restoring the source",
                          instance.uuid, dest)
            try:
                self._restore_source(instance, start=was_running)
            except Exception:  # the transfer error is the one to report
                LOG.exception("restoring %s failed; finish_revert_migration can retry "
                              "(the disks are kept)", instance.uuid)
            raise

    @staticmethod
    def _sent_disks(disks: list[DiskInfo], result: TransferResult,
                    directory: Path) -> list[DiskInfo]:
        """The disks as sent (with the transport's digests), after checking the
        transport reported every file at its full size."""
        sent = {f.name: f for f in result.files}
        out = []
        for d in disks:
            item = sent.get(d.path)
            if item is None:
                raise TransferIntegrityError(f"the transport did not send {d.path}")
            size = (directory / d.path).stat().st_size
            if item.size != size:
                raise TransferIntegrityError(
                    f"{d.path}: {item.size} bytes sent of {size}")
            out.append(DiskInfo(path=d.path, type=d.type, virt_disk_size=d.virt_disk_size,
                                disk_size=d.disk_size, backing_file=d.backing_file,
                                over_committed_disk_size=d.over_committed_disk_size,
                                target=d.target, checksum=item.digest))
        return out

    @staticmethod
    def _save_domain_xml(guest: Guest, inst_dir: Path) -> None:
        save_domain_xml(guest.xml(libvirt.VIR_DOMAIN_XML_INACTIVE), inst_dir)

    def _restore_source(self, instance: Instance, start: bool) -> None:
        """Put ``<dir>_resize`` back as the instance directory, make sure the domain
        is defined, and start it when ``start``."""
        paths = self.drv._paths
        inst_dir, resize_dir = paths.instance_dir(instance), paths.resize_dir(instance)
        if resize_dir.exists():
            if inst_dir.exists():
                raise Invalid(f"cannot restore {resize_dir}: {inst_dir} exists too")
            os.rename(resize_dir, inst_dir)
        if not inst_dir.exists():
            raise Invalid(f"instance {instance.uuid} has no files on {self.drv.host}")
        dom = self.drv._find(instance)
        if dom is None:
            saved = inst_dir / DOMAIN_XML
            xml = xmlutil.to_string(xmlutil.parse(saved.read_bytes()))
            dom = self.drv._host.define(xml)
        if start:
            Guest(dom).start(self.drv.lv_conf.boot_timeout)

    def revert(self, instance: Instance, power_on: bool) -> None:
        """Source, in revert_resize (and after a failed migrate_disks): restore the
        kept copy and start it when ``power_on``.  Idempotent."""
        self._restore_source(instance, start=power_on)

    def confirm(self, instance: Instance) -> None:
        """Source, in confirm_resize: remove the old domain and ``<dir>_resize``."""
        resize_dir = self.drv._paths.resize_dir(instance)
        inst_dir = self.drv._paths.instance_dir(instance)
        if not inst_dir.exists():
            self.drv._remove_domain(instance)
        shutil.rmtree(resize_dir, ignore_errors=True)
