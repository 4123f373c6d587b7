"""The destination's half of a QEMU live migration (:class:`QmpLiveMigrationDestination`,
QemuDriver delegates); the source's half is :mod:`virtsdk_qemu.live`.

``check_can_live_migrate_destination`` leaves a probe file in the instances directory
for the source's shared-storage check; ``pre_live_migration`` defines the guest for
this host (VNC on this host's address), starts QEMU with ``-incoming defer``, sets the
migration capabilities and ``migrate-incoming tcp:<my_ip>:<port>`` on a free port.
For a block migration it first creates empty disks of the source's sizes, starts QEMU
paused and exports them over NBD (``nbd-server-start``, ``block-export-add``);
``post_live_migration_at_destination`` stops the NBD server and resumes the guest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from virtsdk.context import RequestContext
from virtsdk.exceptions import DestinationDiskExists, MigrationError, MigrationPreCheckError
from virtsdk.localdisk import images
from virtsdk.objects import (
    DiskInfo,
    HostResources,
    ImageMeta,
    Instance,
    LiveMigrateData,
    NetworkInfo,
)
from virtsdk_qemu.guest import GuestSpec
from virtsdk_qemu.host import QemuHost
from virtsdk_qemu.migrate_data import QemuLiveMigrateData
from virtsdk_qemu.qmp import QmpCommandError, QmpSocket
from virtsdk_qemu.qmp_job import MiB, migration_capabilities

LOG = logging.getLogger(__name__)

#: the probe file the destination leaves for the source's shared-storage check
CHECK_FILE_PREFIX = ".virtsdk-shared-check-"


class QmpLiveMigrationDestination:
    """The destination's live-migration steps of one host's QemuDriver."""

    def __init__(self, drv: QemuHost) -> None:
        self.drv = drv

    def check_can_live_migrate_destination(
        self, context: RequestContext, instance: Instance,
        src_resources: HostResources, dst_resources: HostResources,
        block_migration: bool | None = None, disk_over_commit: bool = False,
    ) -> LiveMigrateData:
        """Destination: refuses a source with another accelerator or machine type;
        leaves a probe file in the instances directory for the source's
        shared-storage check."""
        src_cpu = src_resources.cpu_info or {}
        for key, mine in (("accel", self.drv.accel), ("machine", self.drv.qconf.machine)):
            theirs = src_cpu.get(key)
            if theirs is not None and theirs != mine:
                raise MigrationPreCheckError(
                    f"source runs {key} {theirs!r}, {self.drv.host} runs {mine!r}")
        self.drv.paths.root.mkdir(parents=True, exist_ok=True)
        name = CHECK_FILE_PREFIX + secrets.token_hex(8)
        (self.drv.paths.root / name).touch()
        st = os.statvfs(self.drv.paths.root)
        return LiveMigrateData(block_migration=block_migration,
                               disk_over_commit=disk_over_commit,
                               filename=name,
                               disk_available_mb=st.f_bavail * st.f_frsize // MiB)

    def cleanup_live_migration_destination_check(
        self, context: RequestContext, dest_check_data: LiveMigrateData
    ) -> None:
        """Destination: remove the probe file."""
        name = dest_check_data.filename
        if name.startswith(CHECK_FILE_PREFIX) and "/" not in name:
            (self.drv.paths.root / name).unlink(missing_ok=True)

    def pre_live_migration(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo,
        disk_info: list[DiskInfo] | None, migrate_data: LiveMigrateData,
    ) -> LiveMigrateData:
        """Destination: define the guest for this host (VNC on this host's address),
        start QEMU waiting for the migration and make it listen on a free port of
        this host's address.  Refuses a guest this host already has."""
        guest = self.drv.guest(instance)
        inst_dir = self.drv.paths.instance_dir(instance)
        shared = bool(migrate_data.is_shared_instance_path)
        if guest.defined() or (inst_dir.exists() and not shared):
            raise DestinationDiskExists(
                f"instance {instance.uuid} already exists on {self.drv.host}")
        created = not inst_dir.exists()
        inst_dir.mkdir(parents=True, exist_ok=True)
        block = bool(migrate_data.block_migration)
        nbd: tuple[str, int, list[str]] = ("", 0, [])
        try:
            if block:
                self._create_disks(inst_dir, disk_info or [])
            image = instance.image or ImageMeta(id="")
            guest.define(self.drv.guest_spec(instance, instance.flavor, image))
            # a block-migrated guest stays paused until its disks are in sync
            guest.start(incoming=True, paused=block)
            guest.qmp.execute("migrate-set-capabilities",
                              {"capabilities": migration_capabilities(self.drv.conf)})
            if block:
                nbd = self._export_disks(guest.qmp, guest.spec())
            uri = self._listen(guest.qmp)
        except BaseException:
            guest.kill()
            guest.undefine()
            if created:
                shutil.rmtree(inst_dir, ignore_errors=True)
            raise
        data = QemuLiveMigrateData.of(dataclasses.replace(
            migrate_data, target_connect_addr=self.drv.qconf.my_ip,
            graphics_listen_addr_vnc=self.drv.qconf.my_ip))
        return dataclasses.replace(data, uri=uri, nbd_host=nbd[0], nbd_port=nbd[1],
                                   nbd_targets=nbd[2])

    def _create_disks(self, inst_dir: Path, disk_info: list[DiskInfo]) -> None:
        """Empty disks of the source's names, formats and sizes (a block migration
        copies every block into them, so a qcow2 arrives without a backing file)."""
        if not disk_info:
            raise MigrationPreCheckError("block migration without the source's disk list")
        for info in disk_info:
            path = self.drv.paths.received(inst_dir, info.path)
            if path.exists():
                raise DestinationDiskExists(f"{path} already exists")
            images.create_blank(path, info.type, info.virt_disk_size)

    def _export_disks(self, qmp: QmpSocket, spec: GuestSpec) -> tuple[str, int, list[str]]:
        """NBD server on this host's address, one writable export per disk; its
        address, port and the exported targets."""
        port = self._free_port(qmp, "nbd-server-start", lambda p: {
            "addr": {"type": "inet", "data": {"host": self.drv.qconf.my_ip,
                                              "port": str(p)}}})
        for disk in spec.disks:
            qmp.execute("block-export-add", {
                "type": "nbd", "id": f"export-{disk.target}", "name": disk.target,
                "node-name": f"drive-{disk.target}", "writable": True})
        return self.drv.qconf.my_ip, port, [d.target for d in spec.disks]

    def _listen(self, qmp: QmpSocket) -> str:
        """``migrate-incoming`` on a free port of the configured range."""
        port = self._free_port(qmp, "migrate-incoming", lambda p: {
            "uri": f"tcp:{self.drv.qconf.my_ip}:{p}"})
        return f"tcp:{self.drv.qconf.my_ip}:{port}"

    def _free_port(self, qmp: QmpSocket, command: str,
                   arguments: Callable[[int], dict[str, Any]]) -> int:
        """Run ``command`` with the ports of the configured range, from a random
        one, until one is free; that port."""
        low = self.drv.qconf.live_migration_port_min
        high = self.drv.qconf.live_migration_port_max
        ports = list(range(low, high + 1))
        start = secrets.randbelow(len(ports))
        last: Exception | None = None
        for port in ports[start:] + ports[:start]:
            try:
                qmp.execute(command, arguments(port))
                return port
            except QmpCommandError as exc:
                last = exc
        raise MigrationError(f"{command}: no free port in {low}-{high}: {last}")

    def post_live_migration_at_destination(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo, block_migration: bool = False,
    ) -> None:
        """Destination, after success: the definition is already this host's.  A guest
        the source paused to force completion arrives paused (QEMU migrates the run
        state): it is resumed here."""
        guest = self.drv.existing(instance)
        if not guest.is_running():
            raise MigrationError(f"instance {instance.uuid} does not run on {self.drv.host}")
        if block_migration:
            try:
                guest.qmp.execute("nbd-server-stop")
            except QmpCommandError:
                LOG.warning("nbd-server-stop on %s failed", instance.uuid)
        status = guest.qmp.execute("query-status")
        if status.get("status") in ("paused", "prelaunch"):
            guest.qmp.execute("cont")

    def rollback_live_migration_at_destination(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo, destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Destination, after failure: stop the incoming QEMU, forget the definition;
        remove the directory unless it is shared with the source."""
        guest = self.drv.guest(instance)
        guest.kill()
        guest.undefine()
        shared = bool(migrate_data and migrate_data.is_shared_instance_path)
        if not shared and destroy_disks:
            shutil.rmtree(self.drv.paths.instance_dir(instance), ignore_errors=True)

    # -- source --------------------------------------------------------------------------
