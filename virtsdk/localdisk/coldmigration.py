"""Cold migration / resize of file-backed instances, for any driver (docs/flows.md)::

    dest    prepare_target()   start a receiver     -> ColdMigrateData(transport, ticket)
    source  migrate_disks()    refuse shrinking, power off, dir -> <dir>_resize,
                               send the disks (qcow2: the overlay only)
    dest    finish()           wait for the disks, verify them, rebase overlays onto
                               this host's image cache, grow, define, start
    source  confirm()          delete <dir>_resize and the old guest
    source  revert()           <dir>_resize -> <dir>, start again
    dest    abort_target()     cancel the receiver, remove what it created

Guarantee: from the first change on the source until ``confirm``, the source keeps a
complete, startable copy of the instance (its definition and its disks, in the kept
directory).  A failure in ``migrate_disks`` puts the directory back and restarts the
guest if it ran.  A driver supplies its hypervisor-specific part as a
:class:`GuestHost`; the disks move through the SDK's transports
(:mod:`virtsdk.transfer`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from oslo_config import cfg

from virtsdk.exceptions import (
    DestinationDiskExists,
    DiskTransferError,
    InstanceNotFound,
    Invalid,
    NotSupported,
    PluginError,
    TransferIntegrityError,
)
from virtsdk.localdisk import images
from virtsdk.localdisk.disks import MIGRATED, LocalDisks, check_no_shrink
from virtsdk.localdisk.imagecache import ImageCache
from virtsdk.localdisk.paths import InstancePaths
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    ImageMeta,
    Instance,
    Migration,
    NetworkInfo,
    TransferProgress,
)
from virtsdk.transfer.base import (
    AUTO,
    PROBE_PREFIX,
    DiskTransport,
    HostEndpoint,
    SendFile,
    TransferResult,
    choose_transport,
    load_transport,
    write_probe,
)
from virtsdk.validation import validate_hostname

LOG = logging.getLogger(__name__)
LOCAL = "local"


class GuestHost(Protocol):
    """The hypervisor-specific half of a cold migration, implemented by a driver."""

    def has_guest(self, instance: Instance) -> bool:
        """Whether the hypervisor here has a guest (defined or running) for it."""
        ...

    def is_running(self, instance: Instance) -> bool: ...

    def instance_disks(self, instance: Instance) -> list[DiskInfo]:
        """The instance's disks (``get_instance_disk_info``)."""
        ...

    def save_definition(self, instance: Instance) -> None:
        """Make sure the instance directory holds what is needed to define the guest
        again from the directory alone (called before the source powers off)."""
        ...

    def power_off_guest(self, instance: Instance, timeout: int, retry_interval: int) -> None:
        ...

    def restore_guest(self, instance: Instance, start: bool) -> None:
        """Define the guest again from its directory if the hypervisor lost it; start
        it when ``start`` (waits until it runs)."""
        ...

    def remove_guest(self, instance: Instance) -> None:
        """Force the guest off and forget it (files stay)."""
        ...

    def build_guest(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                    network_info: NetworkInfo, power_on: bool) -> None:
        """Define the guest from the disks now in its directory; start it if asked."""
        ...


@dataclass
class DiskMigrationSettings:
    """The options a driver has for cold migration (its own group's values)."""

    disk_transport: str
    disk_transfer_timeout: int
    qemu_img_memory_mb: int
    my_ip: str
    exec_prefix: list[str]

    @classmethod
    def from_group(cls, group: Any) -> DiskMigrationSettings:
        """From a driver's option group holding
        :func:`virtsdk.localdisk.opts.local_storage_opts`."""
        return cls(group.disk_transport, group.disk_transfer_timeout,
                   group.qemu_img_memory_mb, group.my_ip,
                   list(group.host_exec_prefix or []))


@dataclass
class _Incoming:
    data: ColdMigrateData
    created_dir: bool


class ColdMigration:
    """Cold-migration steps for one driver (one host).  Thread safe."""

    def __init__(self, name: str, host: str, conf: cfg.ConfigOpts, guests: GuestHost,
                 paths: InstancePaths, image_cache: ImageCache, local_disks: LocalDisks,
                 settings: DiskMigrationSettings) -> None:
        self.name = name
        self.host = host
        self.conf = conf
        self.guests = guests
        self.paths = paths
        self.image_cache = image_cache
        self.local_disks = local_disks
        self.settings = settings
        self._incoming: dict[str, _Incoming] = {}
        self._lock = threading.Lock()

    # -- helpers -------------------------------------------------------------------------

    def _transport_name(self, ticket: dict[str, Any] | None) -> str:
        name = self.settings.disk_transport
        if name and name != AUTO:
            return name
        return choose_transport(self.conf, ticket)

    def _receiver(self) -> tuple[str, DiskTransport]:
        """The transport this destination receives with.  With ``auto`` a transport
        that is not installed or fails to load falls back to ``local``."""
        name = self._transport_name(None)
        try:
            return name, load_transport(name, self.conf)
        except (PluginError, DiskTransferError) as exc:
            if self.settings.disk_transport != AUTO or name == LOCAL:
                raise
            LOG.warning("disk transport %s unavailable (%s); falling back to %s",
                        name, exc, LOCAL)
            return LOCAL, load_transport(LOCAL, self.conf)

    def _endpoint(self) -> HostEndpoint:
        return HostEndpoint(self.settings.my_ip, list(self.settings.exec_prefix))

    # -- destination ---------------------------------------------------------------------

    def prepare_target(self, instance: Instance, migration: Migration) -> ColdMigrateData:
        """Destination: create the instance directory and start a receiver into it.
        Refuses (DestinationDiskExists, nothing touched) when this host already has a
        directory or a guest for the instance."""
        inst_dir = self.paths.instance_dir(instance)
        if inst_dir.exists() or self.guests.has_guest(instance):
            raise DestinationDiskExists(
                f"instance {instance.uuid} already has files or a guest on "
                f"{self.host}; refusing to receive over them")
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
                target = str(self.paths.instance_dir(instance))
                for key, value in list(self._incoming.items()):
                    if value.data.ticket.get("dest_dir") == target:
                        incoming = self._incoming.pop(key)
        data = incoming.data if incoming else migrate_data
        if data is None or not data.ticket:
            self._remove_orphaned_target(instance)
            return
        transport = load_transport(data.transport, self.conf)
        transport.cancel_receive(data.ticket)
        inst_dir = self.paths.instance_dir(instance)
        if (incoming is None or incoming.created_dir) and inst_dir.is_dir() \
                and not self.guests.has_guest(instance):
            leftovers = [n for n in os.listdir(inst_dir) if not n.startswith(".virtsdk-")]
            if not leftovers:
                shutil.rmtree(inst_dir, ignore_errors=True)

    def _remove_orphaned_target(self, instance: Instance) -> None:
        """The audit's clean-up of a receive nobody finished or aborted (this process
        lost its record): remove the instance directory only while it has no guest
        and still carries a receive's probe file, i.e. holds partial copies only."""
        inst_dir = self.paths.instance_dir(instance)
        if not inst_dir.is_dir() or self.guests.has_guest(instance):
            return
        if any(n.startswith(PROBE_PREFIX) for n in os.listdir(inst_dir)):
            LOG.warning("removing the orphaned disk receive %s", inst_dir)
            shutil.rmtree(inst_dir, ignore_errors=True)

    def finish(self, migration: Migration, instance: Instance, disk_info: list[DiskInfo],
               network_info: NetworkInfo, image_meta: ImageMeta, resize_instance: bool,
               power_on: bool) -> None:
        """Destination: wait for and verify the disks, make them usable here, grow them
        to the new flavor, define the guest and start it."""
        with self._lock:
            incoming = self._incoming.pop(migration.uuid, None)
        if incoming is None:
            raise DiskTransferError(
                f"no disk transfer was prepared on {self.host} for migration "
                f"{migration.uuid}")
        data = incoming.data
        transport = load_transport(data.transport, self.conf)
        received = transport.finish_receive(data.ticket, self.settings.disk_transfer_timeout)
        inst_dir = self.paths.instance_dir(instance)
        self._verify(inst_dir, disk_info, {r.name: r for r in received})
        self._adopt_disks(inst_dir, disk_info, image_meta)
        flavor = migration.new_flavor or instance.new_flavor or instance.flavor
        if resize_instance:
            self.local_disks.grow_to_flavor(inst_dir, flavor)
            self.local_disks.ensure_ephemeral(instance, flavor)
        self.local_disks.ensure_swap(instance, flavor)
        try:
            self.guests.build_guest(instance, flavor, image_meta, network_info, power_on)
        except BaseException:
            self.guests.remove_guest(instance)
            raise

    def _verify(self, inst_dir: Path, disk_info: list[DiskInfo],
                received: dict[str, Any]) -> None:
        for info in disk_info:
            path = self.paths.received(inst_dir, info.path)
            got = received.get(info.path)
            if got is None or not path.is_file():
                raise TransferIntegrityError(f"disk {info.path} did not arrive")
            if info.checksum and got.digest and info.checksum != got.digest:
                raise TransferIntegrityError(f"disk {info.path}: digest differs from source")

    def _adopt_disks(self, inst_dir: Path, disk_info: list[DiskInfo],
                     image_meta: ImageMeta) -> None:
        """Check each received disk (format, size, no external data) and point qcow2
        overlays at this host's copy of their base image."""
        for info in disk_info:
            path = self.paths.received(inst_dir, info.path)
            actual = images.info(path, self.settings.qemu_img_memory_mb)
            if actual.format != info.type:
                raise TransferIntegrityError(
                    f"disk {info.path} arrived as {actual.format}, was sent as {info.type}")
            if actual.virtual_size != info.virt_disk_size:
                raise TransferIntegrityError(
                    f"disk {info.path}: virtual size {actual.virtual_size}, "
                    f"source had {info.virt_disk_size}")
            if actual.backing_file is None:
                continue
            base = self.image_cache.base_disk(image_meta)
            if base is None or os.path.basename(actual.backing_file) != base.name:
                raise images.UnsafeImage(
                    f"disk {info.path} is an overlay of {actual.backing_file!r}, which is "
                    f"not the base of image {image_meta.id}")
            images.rebase_in_place(path, base, images.RAW)

    # -- source --------------------------------------------------------------------------

    def migrate_disks(self, instance: Instance, dest: str, flavor: Flavor,
                      timeout: int, retry_interval: int,
                      migrate_data: ColdMigrateData | None,
                      progress: Callable[[TransferProgress], None] | None
                      ) -> list[DiskInfo]:
        """Source: validate, power off, keep the directory as ``<dir>_resize`` and send
        its disks.  On any failure the directory is put back and the guest restarted
        if it was running; the error is re-raised."""
        validate_hostname(dest)
        no_data = migrate_data is None or not migrate_data.ticket
        try:
            disks = self.guests.instance_disks(instance)
        except InstanceNotFound:
            if no_data:
                raise Invalid("cold migration needs the destination's ColdMigrateData"
                              ) from None
            raise
        check_no_shrink(disks, flavor)  # refused first, whatever else is wrong
        if migrate_data is None or not migrate_data.ticket:
            raise Invalid("cold migration needs the destination's ColdMigrateData")
        inst_dir = self.paths.instance_dir(instance)
        resize_dir = self.paths.resize_dir(instance)
        foreign = [d.path for d in disks if "/" in d.path]
        if foreign:
            raise NotSupported(self.name, "cold migration of disks outside the "
                               f"instance directory ({', '.join(foreign)})")
        if resize_dir.exists():
            raise Invalid(f"{resize_dir} already exists: a previous resize of "
                          f"{instance.uuid} was not confirmed or reverted")
        transport = load_transport(self._transport_name(migrate_data.ticket), self.conf)
        was_running = self.guests.is_running(instance)
        self.guests.save_definition(instance)
        self.guests.power_off_guest(instance, timeout, retry_interval)
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
                self.revert(instance, power_on=was_running)
            except Exception:  # noqa: BLE001 - the transfer error is the one to report
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
                raise TransferIntegrityError(f"{d.path}: {item.size} bytes sent of {size}")
            out.append(DiskInfo(path=d.path, type=d.type, virt_disk_size=d.virt_disk_size,
                                disk_size=d.disk_size, backing_file=d.backing_file,
                                over_committed_disk_size=d.over_committed_disk_size,
                                target=d.target, checksum=item.digest))
        return out

    def revert(self, instance: Instance, power_on: bool) -> None:
        """Source, in revert_resize (and after a failed migrate_disks): put
        ``<dir>_resize`` back, define the guest again if needed and start it when
        ``power_on``.  Idempotent."""
        inst_dir = self.paths.instance_dir(instance)
        resize_dir = self.paths.resize_dir(instance)
        if resize_dir.exists():
            if inst_dir.exists():
                raise Invalid(f"cannot restore {resize_dir}: {inst_dir} exists too")
            os.rename(resize_dir, inst_dir)
        if not inst_dir.exists():
            raise Invalid(f"instance {instance.uuid} has no files on {self.host}")
        self.guests.restore_guest(instance, start=power_on)

    def confirm(self, instance: Instance) -> None:
        """Source, in confirm_resize: remove the old guest and ``<dir>_resize``."""
        if not self.paths.instance_dir(instance).exists():
            self.guests.remove_guest(instance)
        shutil.rmtree(self.paths.resize_dir(instance), ignore_errors=True)
