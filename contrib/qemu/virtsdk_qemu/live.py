"""Live migration of QEMU guests over QMP (:class:`QmpLiveMigration`, QemuDriver delegates).

Flow (hosts as in :mod:`virtsdk.driver`)::

    dest    check_can_live_migrate_destination   a probe file in the instances dir
    source  check_can_live_migrate_source        shared path?  disks need it (no block
                                                 migration); same accelerator/machine
    dest    cleanup_live_migration_destination_check
    dest    pre_live_migration                   definition for this host (VNC on this
                                                 host's address), QEMU -incoming defer,
                                                 capabilities, migrate-incoming tcp:ip:port
    source  live_migration                       capabilities + parameters, migrate,
                                                 query-migrate sampled by the SDK's
                                                 monitor and convergence policies ->
                                                 exactly one of post_method / recover_method
    source  post_live_migration_at_source        stop the source QEMU, drop its files
    dest    rollback_live_migration_at_destination  stop the incoming QEMU, drop its files

Block migration (the instances path is not shared and the guest has disks): the
destination creates empty disks of the source's sizes, starts QEMU paused and exports
them over NBD (``nbd-server-start``, ``block-export-add``); the source mirrors each disk
into them (``drive-mirror``, ``copy-mode: write-blocking``) and starts the memory
migration once every mirror is in sync; after it completed the mirrors are ended
(``block-job-cancel``: targets in sync) and the destination stops its NBD server and
resumes the guest.

Abort is ``migrate_cancel`` (or, while the disks are still mirrored, ending the mirrors);
force-complete is ``migrate-start-postcopy`` when post-copy was enabled for the job, else
``stop`` (pause: the remaining memory stops changing).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from oslo_config import cfg

from virtsdk.context import RequestContext
from virtsdk.driver import PostMethod, ProgressCallback, RecoverMethod
from virtsdk.exceptions import (
    DestinationDiskExists,
    Invalid,
    LiveMigrationAborted,
    MigrationError,
    MigrationPreCheckError,
    NotSupported,
)
from virtsdk.live_migration import opts as lm_opts
from virtsdk.live_migration.loader import configured_policy_names, load_policies
from virtsdk.live_migration.monitor import (
    TERMINAL_JOB_TYPES,
    MonotonicProgress,
    monitor_migration,
)
from virtsdk.localdisk import images
from virtsdk.localdisk.paths import InstancePaths
from virtsdk.objects import (
    DiskInfo,
    Flavor,
    HostResources,
    ImageMeta,
    Instance,
    JobStats,
    LiveMigrateData,
    Migration,
    NetworkInfo,
)
from virtsdk.validation import validate_hostname
from virtsdk_qemu.guest import Guest, GuestSpec
from virtsdk_qemu.migrate_data import QemuLiveMigrateData
from virtsdk_qemu.qmp import QmpCommandError, QmpSocket, QmpUnavailable

LOG = logging.getLogger(__name__)

CHECK_FILE_PREFIX = ".virtsdk-shared-check-"
MiB = 1024 * 1024

_STATUS: dict[str, str] = {
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "none": "none",
}


def job_stats_from_qmp(info: dict[str, Any]) -> JobStats:
    """Translate ``query-migrate``'s answer (bytes, milliseconds) into JobStats."""
    status = str(info.get("status", "none"))
    ram = info.get("ram") or {}
    disk = info.get("disk") or {}

    def get(src: dict[str, Any], key: str) -> int:
        return int(src.get(key, 0) or 0)

    mem_total, mem_remaining = get(ram, "total"), get(ram, "remaining")
    disk_total, disk_remaining = get(disk, "total"), get(disk, "remaining")
    mem_processed = get(ram, "transferred")
    page = get(ram, "page-size") or 4096
    return JobStats(
        job_type=_STATUS.get(status, "unbounded"),
        time_elapsed_ms=get(info, "total-time"),
        data_total=mem_total + disk_total,
        data_processed=mem_processed + get(disk, "transferred"),
        data_remaining=mem_remaining + disk_remaining,
        memory_total=mem_total, memory_processed=mem_processed,
        memory_remaining=mem_remaining,
        memory_bps=int(float(ram.get("mbps", 0) or 0) * 1_000_000 / 8),
        memory_dirty_rate=get(ram, "dirty-pages-rate") * page,
        memory_iteration=get(ram, "dirty-sync-count"),
        disk_total=disk_total, disk_processed=get(disk, "transferred"),
        disk_remaining=disk_remaining,
        downtime_ms=get(info, "downtime"),
        setup_time_ms=get(info, "setup-time"),
        postcopy=status.startswith("postcopy"),
    )


def parse_tcp_uri(uri: str) -> tuple[str, int]:
    """``tcp:<host>:<port>`` from another host, validated."""
    if not isinstance(uri, str) or not uri.startswith("tcp:"):
        raise Invalid(f"migration URI must be tcp:<host>:<port>, got {uri!r:.80}")
    host, _, port = uri[4:].rpartition(":")
    validate_hostname(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"migration URI has a bad port: {uri!r:.80}")
    return host, int(port)


class QmpMigrationJob:
    """One outgoing migration as a :class:`virtsdk.live_migration.base.MigrationJob`."""

    def __init__(self, qmp: QmpSocket, postcopy: bool) -> None:
        self.qmp = qmp
        self.postcopy_enabled = postcopy
        self.paused = False
        self.last = JobStats()
        #: ``mirror`` while disks are copied (block migration), then ``migrate``
        self.phase = "mirror"
        self.cancelled = False
        self.force_pending = False
        self.mirrors: list[str] = []
        #: bytes the disk mirrors copied (block migration), counted into every sample
        self.disk_bytes = 0

    def finish_mirrors(self) -> None:
        """After the migration completed: end each mirror with the target in sync."""
        for job_id in self.mirrors:
            self.qmp.execute("block-job-cancel", {"device": job_id})
        self._wait_mirrors_gone()

    def cancel_mirrors(self) -> None:
        """After a failure: stop the mirrors at once; the source keeps its disks."""
        for job_id in self.mirrors:
            try:
                self.qmp.execute("block-job-cancel", {"device": job_id, "force": True})
            except (QmpUnavailable, QmpCommandError):
                pass
        try:
            self._wait_mirrors_gone()
        except (QmpUnavailable, QmpCommandError):
            LOG.exception("disk mirrors did not end")

    def _wait_mirrors_gone(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.mirrors and time.monotonic() < deadline:
            running = {j["device"] for j in self.qmp.execute("query-block-jobs")}
            if not running & set(self.mirrors):
                self.mirrors = []
                return
            time.sleep(0.1)
        if self.mirrors:
            raise MigrationError(f"disk mirrors {self.mirrors} did not end")

    def stats(self) -> JobStats:
        """query-migrate's sample; after a block migration's mirror phase the copied
        disks count as done (so progress covers disks and memory together)."""
        stats = job_stats_from_qmp(self.qmp.execute("query-migrate"))
        if self.disk_bytes:
            disk = self.disk_bytes
            stats = dataclasses.replace(
                stats, data_total=stats.data_total + disk,
                data_processed=stats.data_processed + disk,
                disk_total=disk, disk_processed=disk, disk_remaining=0)
        self.last = stats
        return stats

    def set_max_downtime(self, downtime_ms: int) -> None:
        self.qmp.execute("migrate-set-parameters", {"downtime-limit": int(downtime_ms)})

    def abort(self) -> None:
        self.cancelled = True
        if self.phase == "migrate":
            self.qmp.execute("migrate_cancel")

    def start_postcopy(self) -> None:
        if not self.postcopy_enabled:
            raise NotSupported("qemu", "post-copy (not permitted for this migration)")
        self.qmp.execute("migrate-start-postcopy")

    def pause(self) -> None:
        self.qmp.execute("stop")
        self.paused = True

    def set_cpu_throttle(self, percent: int) -> None:
        """Refused: QEMU throttles vCPUs only from its own auto-converge logic (the
        ``cpu-throttle-*`` parameters shape it); QMP offers no call that sets the
        throttle of a running TCG guest to a given percentage."""
        raise NotSupported("qemu", "setting the CPU throttle of a running migration",
                           "QEMU throttles only through auto-converge")

    def force_complete(self) -> None:
        if self.phase == "mirror":
            self.force_pending = True  # applied once the memory migration runs
            return
        if self.postcopy_enabled:
            self.start_postcopy()
        else:
            self.pause()


class QemuHost(Protocol):
    """What live migration needs from the driver of this host."""

    host: str
    conf: cfg.ConfigOpts
    paths: InstancePaths

    @property
    def name(self) -> str: ...

    @property
    def qconf(self) -> Any: ...

    @property
    def accel(self) -> str: ...

    def guest(self, instance: Instance | str, directory: Path | None = None) -> Guest: ...

    def existing(self, instance: Instance) -> Guest: ...

    def guest_spec(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                   vnc_listen: str | None = None) -> GuestSpec: ...

    def get_instance_disk_info(self, instance: Instance
                               ) -> list[DiskInfo]: ...


class QmpLiveMigration:
    """The live-migration steps of one host's QemuDriver (which delegates to it)."""

    def __init__(self, drv: QemuHost) -> None:
        self.drv = drv
        lm_opts.register_opts(drv.conf)  # [live_migration]: safe to repeat
        self._live_jobs: dict[str, QmpMigrationJob] = {}
        self._live_lock = threading.Lock()

    def _jobs(self) -> dict[str, QmpMigrationJob]:
        return self._live_jobs

    def _capabilities(self) -> list[dict[str, Any]]:
        lm = self.drv.conf.live_migration
        names = set(configured_policy_names(self.drv.conf))
        return [{"capability": "postcopy-ram",
                 "state": bool(lm.permit_post_copy or "postcopy" in names)},
                {"capability": "auto-converge",
                 "state": bool(lm.permit_auto_converge or "auto_converge" in names)}]

    # -- checks --------------------------------------------------------------------------

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

    def check_can_live_migrate_source(
        self, context: RequestContext, instance: Instance,
        dest_check_data: LiveMigrateData,     ) -> LiveMigrateData:
        """Source: the instance path is shared when the destination's probe file is
        visible here; a guest with disks needs a shared path (no block migration)."""
        name = dest_check_data.filename
        shared = bool(name.startswith(CHECK_FILE_PREFIX) and "/" not in name
                      and (self.drv.paths.root / name).exists())
        disks = self.drv.get_instance_disk_info(instance)
        asked = dest_check_data.block_migration
        if shared and asked:
            raise MigrationPreCheckError(
                "block migration asked for, but the instances path is shared")
        if disks and not shared and asked is False:
            raise MigrationPreCheckError(
                f"instance {instance.uuid} has local disks and the instances path is not "
                "shared: it needs block migration")
        foreign = [d.path for d in disks if "/" in d.path]
        if foreign and not shared:
            raise MigrationPreCheckError(
                f"disks outside the instance directory: {', '.join(foreign)}")
        if not self.drv.guest(instance).is_running():
            raise MigrationPreCheckError(f"instance {instance.uuid} is not running")
        return dataclasses.replace(dest_check_data, is_shared_instance_path=shared,
                                   is_shared_block_storage=shared,
                                   block_migration=bool(disks) and not shared)

    # -- destination ---------------------------------------------------------------------

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
        nbd: dict[str, Any] = {}
        try:
            if block:
                self._create_disks(inst_dir, disk_info or [])
            image = instance.image or ImageMeta(id="")
            guest.define(self.drv.guest_spec(instance, instance.flavor, image))
            # a block-migrated guest stays paused until its disks are in sync
            guest.start(incoming=True, paused=block)
            guest.qmp.execute("migrate-set-capabilities",
                              {"capabilities": self._capabilities()})
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
        return dataclasses.replace(data, uri=uri, nbd=nbd)

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

    def _export_disks(self, qmp: QmpSocket, spec: GuestSpec) -> dict[str, Any]:
        """NBD server on this host's address, one writable export per disk."""
        port = self._free_port(qmp, "nbd-server-start", lambda p: {
            "addr": {"type": "inet", "data": {"host": self.drv.qconf.my_ip,
                                              "port": str(p)}}})
        for disk in spec.disks:
            qmp.execute("block-export-add", {
                "type": "nbd", "id": f"export-{disk.target}", "name": disk.target,
                "node-name": f"drive-{disk.target}", "writable": True})
        return {"host": self.drv.qconf.my_ip, "port": port,
                "targets": [d.target for d in spec.disks]}

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

    def live_migration(
        self, context: RequestContext, instance: Instance, dest: str,
        post_method: PostMethod, recover_method: RecoverMethod,
        block_migration: bool = False, migrate_data: LiveMigrateData | None = None,
        migration: Migration | None = None, progress: ProgressCallback | None = None,
    ) -> None:
        """Source: migrate to the URI the destination listens on, monitored by the
        shared monitor with the configured policies; ends in exactly one of
        ``post_method`` / ``recover_method`` (then re-raises the failure)."""
        data = migrate_data or LiveMigrateData()
        try:
            validate_hostname(dest)
            if migrate_data is None:
                raise Invalid("live migration needs the destination's LiveMigrateData")
            uri = parse_tcp_uri(QemuLiveMigrateData.of(migrate_data).uri)
            guest = self.drv.existing(instance)
            nbd = self._nbd_targets(migrate_data, guest) if block_migration else None
        except BaseException:
            recover_method(context, instance, dest, data)
            raise
        policies = load_policies(configured_policy_names(self.drv.conf), self.drv.conf)
        caps = self._capabilities()
        job = QmpMigrationJob(guest.qmp, postcopy=bool(caps[0]["state"]))
        lm = self.drv.conf.live_migration
        try:
            guest.qmp.execute("migrate-set-capabilities", {"capabilities": caps})
            params: dict[str, Any] = {"downtime-limit": 300}
            if lm.bandwidth:
                params["max-bandwidth"] = int(lm.bandwidth) * MiB
            if caps[0]["state"] and lm.postcopy_bandwidth:
                # [live_migration] postcopy_bandwidth (0: QEMU's unlimited post-copy)
                params["max-postcopy-bandwidth"] = int(lm.postcopy_bandwidth) * MiB
            guest.qmp.execute("migrate-set-parameters", params)
        except (QmpUnavailable, QmpCommandError) as exc:
            recover_method(context, instance, dest, data)
            raise MigrationError(f"live migration of {instance.uuid} did not start: "
                                 f"{exc}") from None
        jobs = self._jobs()
        with self._live_lock:
            jobs[instance.uuid] = job
        failure: BaseException | None = None
        final = JobStats(job_type="failed")
        mono = MonotonicProgress()

        def report(stats: JobStats) -> None:
            if progress is not None:
                progress(mono.apply(stats))

        try:
            if nbd is not None:
                self._mirror(job, nbd, report, guest.spec().memory_mb * MiB)
            if job.cancelled:
                final = JobStats(job_type="cancelled")
                raise LiveMigrationAborted("live migration was cancelled")
            job.phase = "migrate"
            guest.qmp.execute("migrate", {"uri": f"tcp:{uri[0]}:{uri[1]}"})
            if job.force_pending:
                job.force_complete()
            steps: list[int] = []
            final = monitor_migration(job, policies, report,
                                      interval=lm.monitor_interval, downtime_steps=steps)
            if migration is not None:
                migration.downtime_steps = list(steps)
        except BaseException as exc:  # noqa: BLE001 - ends in recover_method below
            failure = exc
            if job.phase == "migrate":
                final = self._cancel_and_wait(job)
        finally:
            with self._live_lock:
                jobs.pop(instance.uuid, None)
        if final.job_type == "completed":
            try:
                job.finish_mirrors()  # the source is stopped: the targets are in sync
            except (QmpUnavailable, QmpCommandError) as exc:
                failure, final = exc, JobStats(job_type="failed")
        if final.job_type == "completed":
            post_method(context, instance, dest, bool(block_migration), data)
            return
        job.cancel_mirrors()
        if job.paused:
            try:
                guest.qmp.execute("cont")
            except (QmpUnavailable, QmpCommandError):
                LOG.exception("resuming %s after a failed migration failed", instance.uuid)
        error = self._failure(guest.qmp, final)
        recover_method(context, instance, dest, data)
        if failure is not None:
            raise failure
        raise error

    @staticmethod
    def _nbd_targets(data: LiveMigrateData, guest: Guest) -> list[tuple[str, str]]:
        """``(drive, nbd URI)`` per disk, from the destination's exports (validated:
        they came from another host)."""
        nbd = QemuLiveMigrateData.of(data).nbd or {}
        host = str(nbd.get("host", ""))
        validate_hostname(host)
        port = nbd.get("port")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise Invalid(f"bad NBD port from the destination: {port!r:.40}")
        mine = [d.target for d in guest.spec().disks]
        if sorted(nbd.get("targets") or []) != sorted(mine):
            raise Invalid("the destination exported other disks than this guest has")
        return [(f"drive-{t}", f"nbd:{host}:{port}:exportname={t}") for t in mine]

    def _mirror(self, job: QmpMigrationJob, targets: list[tuple[str, str]],
                progress: ProgressCallback, memory: int) -> None:
        """Copy every disk to the destination's NBD exports (``drive-mirror``, guest
        writes mirrored synchronously once in sync) and wait until all are ready.
        Samples count the ``memory`` still to move as remaining."""
        for node, target in targets:
            job_id = f"mirror-{node}"
            job.qmp.execute("drive-mirror", {
                "job-id": job_id, "device": node, "target": target, "format": "raw",
                "sync": "full", "mode": "existing", "copy-mode": "write-blocking"})
            job.mirrors.append(job_id)
        interval = self.drv.conf.live_migration.monitor_interval
        while not job.cancelled:
            jobs = {j["device"]: j for j in job.qmp.execute("query-block-jobs")}
            mine = [jobs.get(j) for j in job.mirrors]
            if any(j is None for j in mine):
                raise MigrationError("a disk mirror ended before it was in sync")
            total = sum(int(j["len"]) for j in mine if j)
            done = sum(int(j["offset"]) for j in mine if j)
            progress(JobStats(job_type="unbounded", data_total=total + memory,
                              data_processed=done, data_remaining=total - done + memory,
                              memory_total=memory, memory_remaining=memory,
                              disk_total=total, disk_processed=done,
                              disk_remaining=total - done))
            if all(j and j.get("ready") for j in mine):
                job.disk_bytes = total
                return
            time.sleep(interval)

    @staticmethod
    def _failure(qmp: QmpSocket, final: JobStats) -> MigrationError:
        if final.job_type == "cancelled":
            return LiveMigrationAborted("live migration was cancelled")
        detail = ""
        try:
            detail = str(qmp.execute("query-migrate").get("error-desc", ""))
        except (QmpUnavailable, QmpCommandError):
            pass
        return MigrationError(f"live migration {final.job_type}: {detail or 'no detail'}")

    @staticmethod
    def _cancel_and_wait(job: QmpMigrationJob, timeout: float = 60.0) -> JobStats:
        """Cancel the job and wait for it to end; its final stats."""
        try:
            job.abort()
        except (QmpUnavailable, QmpCommandError):
            LOG.exception("migrate_cancel failed")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stats = job.stats()
            except (QmpUnavailable, QmpCommandError):
                return JobStats(job_type="failed")
            if stats.job_type in TERMINAL_JOB_TYPES or stats.job_type == "none":
                return stats
            time.sleep(0.2)
        return JobStats(job_type="failed")

    def _running_job(self, instance: Instance) -> QmpMigrationJob:
        jobs = self._jobs()
        with self._live_lock:
            job = jobs.get(instance.uuid)
        if job is None:
            raise Invalid(f"no live migration of {instance.uuid} runs on {self.drv.host}")
        return job

    def live_migration_abort(self, instance: Instance) -> None:
        """Source, from another thread: ``migrate_cancel``."""
        self._running_job(instance).abort()

    def live_migration_force_complete(self, instance: Instance) -> None:
        """Source: switch to post-copy when it was enabled for the job, else pause."""
        self._running_job(instance).force_complete()

    def post_live_migration_at_source(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo,
    ) -> None:
        """Source, after success: stop the source QEMU (it is in ``postmigrate``),
        forget its definition and, unless the directory is shared with the
        destination, remove it."""
        guest = self.drv.guest(instance)
        guest.kill()
        guest.undefine()
        inst_dir = self.drv.paths.instance_dir(instance)
        if inst_dir.is_dir() and not list(inst_dir.glob("guest-*.json")):
            shutil.rmtree(inst_dir, ignore_errors=True)

    def cleanup(
        self, context: RequestContext, instance: Instance,
        network_info: NetworkInfo, destroy_disks: bool = True,
        migrate_data: LiveMigrateData | None = None,
    ) -> None:
        """Any host, what is left after the instance moved away: stop this host's
        QEMU and forget it; the files go only when nothing else uses them."""
        guest = self.drv.guest(instance)
        guest.kill()
        guest.undefine()
        inst_dir = self.drv.paths.instance_dir(instance)
        if destroy_disks and inst_dir.is_dir() and not list(inst_dir.glob("guest-*.json")):
            shutil.rmtree(inst_dir, ignore_errors=True)
