"""Live migration of QEMU guests over QMP: the source's half (:class:`QmpLiveMigration`)
here, the destination's in :mod:`virtsdk_qemu.live_dest`, the running job in
:mod:`virtsdk_qemu.qmp_job`; QemuDriver delegates to both halves.

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
import shutil
import threading
import time
from typing import Any

from virtsdk.context import RequestContext
from virtsdk.driver import PostMethod, ProgressCallback, RecoverMethod
from virtsdk.exceptions import (
    Invalid,
    LiveMigrationAborted,
    MigrationError,
    MigrationPreCheckError,
)
from virtsdk.live_migration import opts as lm_opts
from virtsdk.live_migration.loader import configured_policy_names, load_policies
from virtsdk.live_migration.monitor import MonotonicProgress, monitor_migration
from virtsdk.objects import Instance, JobStats, LiveMigrateData, Migration, NetworkInfo
from virtsdk.validation import validate_hostname
from virtsdk_qemu.guest import Guest
from virtsdk_qemu.host import QemuHost
from virtsdk_qemu.live_dest import CHECK_FILE_PREFIX
from virtsdk_qemu.migrate_data import QemuLiveMigrateData
from virtsdk_qemu.qmp import QmpCommandError, QmpSocket, QmpUnavailable
from virtsdk_qemu.qmp_job import MiB, QmpMigrationJob, cancel_and_wait, migration_capabilities

LOG = logging.getLogger(__name__)


def parse_tcp_uri(uri: str) -> tuple[str, int]:
    """``tcp:<host>:<port>`` from another host, validated."""
    if not isinstance(uri, str) or not uri.startswith("tcp:"):
        raise Invalid(f"migration URI must be tcp:<host>:<port>, got {uri!r:.80}")
    host, _, port = uri[4:].rpartition(":")
    validate_hostname(host)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise Invalid(f"migration URI has a bad port: {uri!r:.80}")
    return host, int(port)


class QmpLiveMigration:
    """The live-migration steps of one host's QemuDriver (which delegates to it)."""

    def __init__(self, drv: QemuHost) -> None:
        self.drv = drv
        lm_opts.register_opts(drv.conf)  # [live_migration]: safe to repeat
        self._live_jobs: dict[str, QmpMigrationJob] = {}
        self._live_lock = threading.Lock()

    def check_can_live_migrate_source(
        self, context: RequestContext, instance: Instance,
        dest_check_data: LiveMigrateData,
    ) -> LiveMigrateData:
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
        try:
            job = self._prepare_job(guest.qmp)
        except (QmpUnavailable, QmpCommandError) as exc:
            recover_method(context, instance, dest, data)
            raise MigrationError(f"live migration of {instance.uuid} did not start: "
                                 f"{exc}") from None
        jobs = self._live_jobs
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
            final = monitor_migration(job, policies, report, downtime_steps=steps,
                                      interval=self.drv.conf.live_migration.monitor_interval)
            if migration is not None:
                migration.downtime_steps = list(steps)
        except BaseException as exc:  # noqa: BLE001 - ends in recover_method below
            failure = exc
            if job.phase == "migrate":
                final = cancel_and_wait(job)
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

    def _prepare_job(self, qmp: QmpSocket) -> QmpMigrationJob:
        """Set the source's migration capabilities and parameters from
        ``[live_migration]``; the job about to start."""
        caps = migration_capabilities(self.drv.conf)
        postcopy = bool(caps[0]["state"])
        lm = self.drv.conf.live_migration
        qmp.execute("migrate-set-capabilities", {"capabilities": caps})
        params: dict[str, Any] = {"downtime-limit": 300}
        if lm.bandwidth:
            params["max-bandwidth"] = int(lm.bandwidth) * MiB
        if postcopy and lm.postcopy_bandwidth:
            # [live_migration] postcopy_bandwidth (0: QEMU's unlimited post-copy)
            params["max-postcopy-bandwidth"] = int(lm.postcopy_bandwidth) * MiB
        qmp.execute("migrate-set-parameters", params)
        return QmpMigrationJob(qmp, postcopy=postcopy)

    @staticmethod
    def _nbd_targets(data: LiveMigrateData, guest: Guest) -> list[tuple[str, str]]:
        """``(drive, nbd URI)`` per disk, from the destination's exports (validated:
        they came from another host)."""
        exports = QemuLiveMigrateData.of(data)
        host, port = exports.nbd_host, exports.nbd_port
        validate_hostname(host)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise Invalid(f"bad NBD port from the destination: {port!r:.40}")
        mine = [d.target for d in guest.spec().disks]
        if sorted(map(str, exports.nbd_targets)) != sorted(mine):
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
    def _running_job(self, instance: Instance) -> QmpMigrationJob:
        jobs = self._live_jobs
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
