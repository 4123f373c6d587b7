"""Cold migration and resize for the fake driver (the call chain of docs/flows.md).

dest ``prepare_migrate_disk_target`` -> source ``migrate_disk_and_power_off`` -> dest
``finish_migration`` -> source ``confirm_migration`` | (dest ``destroy`` + source
``finish_revert_migration``).  The source keeps the original instance as a kept copy
(``FakeHost.resize_copies``, Nova's ``<dir>_resize``) until confirm or revert, so the
instance and its disks survive any failure on either side.
"""

from __future__ import annotations

import logging
import uuid as uuidlib

from virtsdk.context import RequestContext
from virtsdk.driver import TransferCallback
from virtsdk.exceptions import (
    InstanceNotFound,
    MigrationError,
    ResizeShrinkNotAllowed,
    TransferAuthError,
    TransferIntegrityError,
)
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
from virtsdk.states import PowerState
from virtsdk.validation import validate_hostname
from virtsdk_fake.local import LocalHost
from virtsdk_fake.storage import BLOCK, FakeDisk, FakeInstance, MiB, flavor_disks

LOG = logging.getLogger(__name__)

#: disks whose size a resize may never reduce (swap is recreated, so it may)
_NO_SHRINK = ("disk", "disk.local")


class FakeColdMigration:
    """Every cold-migration and resize step of one fake host (both sides of the flow):
    what :class:`~virtsdk_fake.driver.FakeDriver` forwards those methods to."""

    def __init__(self, local: LocalHost) -> None:
        self._local = local
        self.fabric = local.fabric
        self.hostobj = local.state
        self.host = local.name

    def prepare_migrate_disk_target(self, context: RequestContext, migration: Migration,
                                    instance: Instance, flavor: Flavor) -> ColdMigrateData:
        """Destination: reserve a one-time ticket for the incoming disks.  Touches
        nothing the instance already has here (same-host resize is fine)."""
        self._local.step("prepare_migrate_disk_target")
        token = uuidlib.uuid4().hex
        with self.fabric.lock:
            self.hostobj.cold_targets[instance.uuid] = token
        return ColdMigrateData(transport="fake",
                               ticket={"fabric": self.fabric.name, "host": self.host,
                                       "token": token},
                               shared_storage=self.fabric.shared_storage)

    def abort_migrate_disk_target(self, context: RequestContext, instance: Instance,
                                  migrate_data: ColdMigrateData) -> None:
        """Destination: drop the ticket and any partly received disks.  Idempotent."""
        self._local.step("abort_migrate_disk_target")
        with self.fabric.lock:
            self.hostobj.cold_targets.pop(instance.uuid, None)
            self.hostobj.incoming_disks.pop(instance.uuid, None)

    @staticmethod
    def _check_shrink(inst: FakeInstance, flavor: Flavor) -> None:
        new_sizes = flavor_disks(flavor)
        for name in _NO_SHRINK:
            disk = inst.disks.get(name)
            if disk is not None and new_sizes.get(name, 0) < disk.size:
                raise ResizeShrinkNotAllowed(
                    f"instance {inst.uuid}: flavor {flavor.name!r} would shrink disk "
                    f"{name!r} from {disk.size} to {new_sizes.get(name, 0)} bytes")

    def _check_ticket(self, instance: Instance, dest: str,
                      migrate_data: ColdMigrateData | None) -> None:
        if migrate_data is None or not migrate_data.transport:
            return
        dest_host = self.fabric.host(dest)
        ticket = migrate_data.ticket
        if (migrate_data.transport != "fake" or ticket.get("host") != dest
                or ticket.get("token") != dest_host.cold_targets.get(instance.uuid)):
            raise TransferAuthError(f"instance {instance.uuid}: the disk ticket for {dest!r} "
                                    "is unknown or stale; run prepare_migrate_disk_target")

    def migrate_disk_and_power_off(
        self, context: RequestContext, instance: Instance, dest: str, flavor: Flavor,
        network_info: NetworkInfo,         timeout: int = 0, retry_interval: int = 0,
        migrate_data: ColdMigrateData | None = None,
        progress: TransferCallback | None = None,
    ) -> list[DiskInfo]:
        """Source: refuse shrinking before touching anything; power off; keep the
        original as the ``_resize`` copy; copy the root and ephemeral disks (only
        written blocks) into ``dest``'s received disks, reporting progress.  The step
        ``migrate_disk.transfer`` fires halfway through the bytes.  On failure the
        partial copy is removed and the instance is defined here again, stopped."""
        self._local.step("migrate_disk_and_power_off")
        validate_hostname(dest)
        dest_host = self.fabric.host(dest)
        inst = self._local.get(instance)
        self._check_shrink(inst, flavor)
        self._check_ticket(instance, dest, migrate_data)
        self._local.power_off_guest(inst, timeout, retry_interval)
        with self.fabric.lock:
            self.hostobj.instances.pop(instance.uuid, None)
            self.hostobj.resize_copies[instance.uuid] = inst
        try:
            sent = self._send_disks(inst, dest_host.name, progress)
        except BaseException:
            with self.fabric.lock:
                dest_host.incoming_disks.pop(instance.uuid, None)
                kept = self.hostobj.resize_copies.pop(instance.uuid, None)
                if kept is not None:
                    self.hostobj.instances[instance.uuid] = kept
            LOG.warning("cold migration of %s to %s failed; instance restored on %s",
                        instance.uuid, dest, self.host)
            raise
        return sent

    def _send_disks(self, inst: FakeInstance, dest: str,
                    progress: TransferCallback | None) -> list[DiskInfo]:
        """Copy each disk's written blocks into a private twin, then hand the twin to
        ``dest``'s received disks in one step under the fabric lock (so a fabric
        shared between processes never sees, or loses, a half-written twin)."""
        to_send = [d for n, d in sorted(inst.disks.items()) if n != "disk.swap"]
        total = sum(d.allocated for d in to_send)
        rate = self.fabric.link_bandwidth_mbps * MiB
        with self.fabric.lock:
            self.fabric.host(dest).incoming_disks[inst.uuid] = {}
        done = 0
        halfway_hit = False
        for disk in to_send:
            twin = FakeDisk(disk.name, disk.size)
            for index in sorted(disk.blocks):
                if not halfway_hit and done * 2 >= total:
                    halfway_hit = True
                    self._local.step("migrate_disk.transfer")
                twin.blocks[index] = disk.blocks[index]
                done += BLOCK
                self.fabric.clock.sleep(BLOCK / rate)
                if progress is not None:
                    progress(TransferProgress(done, total, rate, disk.name))
            with self.fabric.lock:
                received = self.fabric.host(dest).incoming_disks.get(inst.uuid)
                if received is None:
                    raise MigrationError(f"instance {inst.uuid}: {dest!r} dropped the "
                                         "incoming disks during the transfer")
                received[disk.name] = twin
        if not halfway_hit:
            self._local.step("migrate_disk.transfer")
        return [disk.info() for disk in to_send]

    def finish_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        disk_info: list[DiskInfo], network_info: NetworkInfo, image_meta: ImageMeta,
        resize_instance: bool,         power_on: bool = True,
    ) -> None:
        """Destination: check the received disks against ``disk_info`` checksums,
        grow them to ``instance.flavor`` when ``resize_instance``, define the
        instance here (fresh memory and swap) and start it if asked.  On failure the
        received disks stay, so a revert or a retry finds them."""
        self._local.step("finish_migration")
        with self.fabric.lock:
            received = self.hostobj.incoming_disks.get(instance.uuid)
            if received is None:
                raise MigrationError(f"instance {instance.uuid}: no disks were received on "
                                     f"{self.host!r}; migrate_disk_and_power_off must run first")
            if instance.uuid in self.hostobj.instances:
                raise MigrationError(f"instance {instance.uuid} is already defined on "
                                     f"{self.host!r}")
            for info in disk_info:
                disk = received.get(info.path)
                if disk is None or (info.checksum and disk.digest() != info.checksum):
                    raise TransferIntegrityError(
                        f"instance {instance.uuid}: disk {info.path!r} arrived damaged or "
                        "incomplete")
        flavor = instance.flavor.copy()
        if resize_instance:
            self._local.step("finish_migration.resize")
        inst = FakeInstance.build(instance.uuid, instance.name, flavor, self._local.kib_per_mb,
                                  instance.metadata)
        for name, size in flavor_disks(flavor).items():
            disk = received.get(name)
            if disk is None or name == "disk.swap":
                continue
            if resize_instance and size > disk.size:
                grown = disk.copy()
                grown.grow(size)
                disk = grown
            inst.disks[name] = disk
        for name, disk in received.items():
            inst.disks.setdefault(name, disk)
        with self.fabric.lock:
            if self._local.enforce_capacity:
                extra_gb = max(0, inst.disk_gb - sum(-(-d.size // 2**30)
                                                     for d in received.values()))
                self.hostobj.check_fits(flavor, f"instance {instance.uuid}", disk_gb=extra_gb)
            if power_on:
                inst.power_state = PowerState.RUNNING
                inst.boots += 1
            self.hostobj.instances[instance.uuid] = inst
            self.hostobj.incoming_disks.pop(instance.uuid, None)
            self.hostobj.cold_targets.pop(instance.uuid, None)

    def confirm_migration(self, context: RequestContext, migration: Migration,
                          instance: Instance, network_info: NetworkInfo) -> None:
        """Source: delete the kept copy.  Idempotent."""
        self._local.step("confirm_migration")
        with self.fabric.lock:
            self.hostobj.resize_copies.pop(instance.uuid, None)

    def finish_revert_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        network_info: NetworkInfo, power_on: bool = True,
    ) -> None:
        """Source: define the kept copy again (original flavor and disks) and start it
        if asked.  Also recovers after a failed ``migrate_disk_and_power_off`` (the
        instance is then already defined here).  The destination must have destroyed
        its instance first when both are this host."""
        self._local.step("finish_revert_migration")
        with self.fabric.lock:
            kept = self.hostobj.resize_copies.pop(instance.uuid, None)
            if kept is not None:
                if instance.uuid in self.hostobj.instances:
                    LOG.warning("revert of %s on %s replaces the resized instance here",
                                instance.uuid, self.host)
                self.hostobj.instances[instance.uuid] = kept
            inst = self.hostobj.instances.get(instance.uuid)
            if inst is None:
                raise InstanceNotFound(instance.uuid, self.host)
            if power_on and inst.power_state != PowerState.RUNNING:
                inst.power_state = PowerState.RUNNING
                inst.boots += 1
