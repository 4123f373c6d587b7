"""One outgoing QEMU migration seen through QMP.

:func:`job_stats_from_qmp` translates ``query-migrate``'s answer into
:class:`~virtsdk.objects.JobStats`; :class:`QmpMigrationJob` is the running job the
shared monitor (:func:`virtsdk.live_migration.monitor.monitor_migration`) and the
convergence policies drive; :func:`migration_capabilities` is what both hosts set
(``migrate-set-capabilities``) from ``[live_migration]``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from oslo_config import cfg

from virtsdk.exceptions import MigrationError, NotSupported
from virtsdk.live_migration.loader import configured_policy_names
from virtsdk.live_migration.monitor import TERMINAL_JOB_TYPES
from virtsdk.objects import JobStats
from virtsdk_qemu.qmp import QmpCommandError, QmpSocket, QmpUnavailable

LOG = logging.getLogger(__name__)

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
        # QEMU reports ``downtime`` once the job completed: its measurement of the pause
        downtime_measured=status == "completed" and "downtime" in info,
        setup_time_ms=get(info, "setup-time"),
        postcopy=status.startswith("postcopy"),
    )



def migration_capabilities(conf: cfg.ConfigOpts) -> list[dict[str, Any]]:
    """``postcopy-ram`` and ``auto-converge`` as ``[live_migration]`` asks (both hosts
    set the same capabilities)."""
    lm = conf.live_migration
    names = set(configured_policy_names(conf))
    return [{"capability": "postcopy-ram",
             "state": bool(lm.permit_post_copy or "postcopy" in names)},
            {"capability": "auto-converge",
             "state": bool(lm.permit_auto_converge or "auto_converge" in names)}]


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


def cancel_and_wait(job: QmpMigrationJob, timeout: float = 60.0) -> JobStats:
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
