"""A running libvirt live migration as a :class:`virtsdk.live_migration.base.MigrationJob`.

Created on the source host by ``LiveMigrator.live_migration``.  The blocking
libvirt call (``migrateToURI3``) runs in a worker thread started by :meth:`start`;
the shared monitor (:func:`virtsdk.live_migration.monitor.monitor_migration`) polls
:meth:`stats` from the calling thread and applies its policies' actions through
:meth:`set_max_downtime`, :meth:`abort`, :meth:`start_postcopy` and :meth:`pause`,
which map one to one onto ``virDomain`` calls.  ``abort`` may also come from an API
thread (``live_migration_abort``).

Guarantee: once :meth:`start` was called, :meth:`wait` returns only after the worker
thread ended, and a job that is abandoned (timeout, monitor failure) is cancelled
with ``abortJob`` - killing the client would not stop a peer-to-peer job.

Statistics are measurements.  While the job runs, libvirt's ``downtime`` field is
QEMU's *expected* downtime: it is reported as ``expected_downtime_ms``, never as
``downtime_ms``.  The final downtime, bytes and time come from the completed job's
statistics, which libvirt hands the source in its job-completed event
(:class:`JobCompletedListener`; the source domain is undefined by then, so
``jobStats(VIR_DOMAIN_JOB_STATS_COMPLETED)`` on it finds nothing).  When none can be
had the final sample says so (``downtime_measured`` false).  A cancelled job keeps
its last real sample: libvirt forgets the counters once the job is aborted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from virtsdk.exceptions import LiveMigrationAborted, NotSupported
from virtsdk.objects import JobStats

LOG = logging.getLogger(__name__)

_JOB_TYPES: dict[int, str] = {
    libvirt.VIR_DOMAIN_JOB_NONE: "none",
    libvirt.VIR_DOMAIN_JOB_BOUNDED: "unbounded",
    libvirt.VIR_DOMAIN_JOB_UNBOUNDED: "unbounded",
    libvirt.VIR_DOMAIN_JOB_COMPLETED: "completed",
    libvirt.VIR_DOMAIN_JOB_FAILED: "failed",
    libvirt.VIR_DOMAIN_JOB_CANCELLED: "cancelled",
}


def job_stats_from_libvirt(raw: dict[str, Any], postcopy: bool = False) -> JobStats:
    """Translate ``virDomain.jobStats()`` (milliseconds, bytes) into JobStats.

    The dirty rate libvirt reports in pages per second becomes bytes per second; the
    ``downtime`` of a job that has not completed is QEMU's estimate and goes into
    ``expected_downtime_ms``; only a completed job's is a measured ``downtime_ms``."""

    def val(key: str) -> int:
        return int(raw.get(key, 0) or 0)

    job_type = _JOB_TYPES.get(int(raw.get("type", 0)), "none")
    completed = job_type == "completed"
    page_size = val(libvirt.VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE) or 4096
    return JobStats(
        job_type=job_type,
        time_elapsed_ms=val(libvirt.VIR_DOMAIN_JOB_TIME_ELAPSED),
        data_total=val(libvirt.VIR_DOMAIN_JOB_DATA_TOTAL),
        data_processed=val(libvirt.VIR_DOMAIN_JOB_DATA_PROCESSED),
        data_remaining=val(libvirt.VIR_DOMAIN_JOB_DATA_REMAINING),
        memory_total=val(libvirt.VIR_DOMAIN_JOB_MEMORY_TOTAL),
        memory_processed=val(libvirt.VIR_DOMAIN_JOB_MEMORY_PROCESSED),
        memory_remaining=val(libvirt.VIR_DOMAIN_JOB_MEMORY_REMAINING),
        memory_bps=val(libvirt.VIR_DOMAIN_JOB_MEMORY_BPS),
        memory_dirty_rate=val(libvirt.VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE) * page_size,
        memory_iteration=val(libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION),
        disk_total=val(libvirt.VIR_DOMAIN_JOB_DISK_TOTAL),
        disk_processed=val(libvirt.VIR_DOMAIN_JOB_DISK_PROCESSED),
        disk_remaining=val(libvirt.VIR_DOMAIN_JOB_DISK_REMAINING),
        downtime_ms=val(libvirt.VIR_DOMAIN_JOB_DOWNTIME) if completed else 0,
        downtime_measured=completed and libvirt.VIR_DOMAIN_JOB_DOWNTIME in raw,
        expected_downtime_ms=0 if completed else val(libvirt.VIR_DOMAIN_JOB_DOWNTIME),
        setup_time_ms=val(libvirt.VIR_DOMAIN_JOB_SETUP_TIME),
        postcopy=postcopy,
        cpu_throttle=val(libvirt.VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE),
    )


_EVENT_LOOP_LOCK = threading.Lock()
_event_loop: threading.Thread | None = None


def ensure_event_loop() -> None:
    """Run libvirt's default event loop in one daemon thread of this process (once).

    Only connections opened afterwards deliver domain events, so call it before
    opening the connection a :class:`JobCompletedListener` uses."""
    global _event_loop
    with _EVENT_LOOP_LOCK:
        if _event_loop is not None:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        _event_loop = threading.Thread(target=run, name="libvirt-events", daemon=True)
        _event_loop.start()


class JobCompletedListener:
    """Catches ``VIR_DOMAIN_EVENT_ID_JOB_COMPLETED`` of one domain on one connection:
    the completed job's statistics, which libvirt sends the source of a migration
    (post-copy included) as the job ends.  The connection must have been opened after
    :func:`ensure_event_loop`."""

    def __init__(self, conn: libvirt.virConnect, domain: libvirt.virDomain) -> None:
        self._conn = conn
        self._got = threading.Event()
        self.stats: dict[str, Any] | None = None
        self._id = conn.domainEventRegisterAny(
            domain, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_event, None)

    def _on_event(self, _conn: libvirt.virConnect, _dom: libvirt.virDomain,
                  params: dict[str, Any], _opaque: object) -> None:
        self.stats = {**params, "type": libvirt.VIR_DOMAIN_JOB_COMPLETED}
        self._got.set()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The statistics, waiting up to ``timeout`` s (the event may trail the call)."""
        self._got.wait(timeout)
        return self.stats

    def close(self) -> None:
        try:
            self._conn.domainEventDeregisterAny(self._id)
        except libvirt.libvirtError as exc:
            LOG.debug("job-completed callback not deregistered: %s", exc)


class LibvirtMigrationJob:
    """One outgoing migration of ``domain`` (source host).

    ``run`` is the blocking migration call (see ``migrate.start_migration``);
    ``completed_stats`` is asked, after success, for the completed job's statistics
    (the source domain is gone by then, so the driver reads them on the destination);
    ``postcopy_permitted`` says whether the job was started with VIR_MIGRATE_POSTCOPY.
    """

    def __init__(
        self,
        domain: libvirt.virDomain,
        run: Callable[[], object],
        completed_stats: Callable[[], dict[str, Any] | None] | None = None,
        postcopy_permitted: bool = False,
    ) -> None:
        self.domain = domain
        self._run = run
        self._completed_stats = completed_stats
        self.postcopy_permitted = postcopy_permitted
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.result: object = None
        self.aborted = False
        self.postcopy_started = False
        self.paused = False
        self.last: JobStats = JobStats(job_type="unbounded")
        self._final: JobStats | None = None
        #: undoes what was set on the source guest for this migration only (a CPU
        #: limit); called when the guest stays on the source
        self.restore_source: Callable[[], None] | None = None

    # -- the worker thread ---------------------------------------------------------------

    def start(self) -> None:
        """Start the migration call in a worker thread (called once)."""
        self._thread = threading.Thread(
            target=self._worker, name=f"migrate-{self.domain.name()}", daemon=True
        )
        self._thread.start()

    def _worker(self) -> None:
        try:
            self.result = self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller via wait()
            self.error = exc
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True once it ended."""
        ok = self._done.wait(timeout)
        if ok and self._thread is not None:
            self._thread.join()
        return ok

    def succeeded(self) -> bool:
        """True once the migration call returned without error."""
        return self.done and self.error is None

    def failure(self) -> BaseException:
        """The error to re-raise after recover_method (an abort becomes
        LiveMigrationAborted)."""
        if self.aborted:
            return LiveMigrationAborted(
                f"live migration of {self.domain.name()} was aborted"
                + (f": {self.error}" if self.error else "")
            )
        return self.error or LiveMigrationAborted("live migration did not complete")

    def lift_source_limits(self) -> None:
        """The guest stays on the source: undo the limits set for the migration (once)."""
        restore, self.restore_source = self.restore_source, None
        if restore is not None:
            restore()

    # -- MigrationJob ---------------------------------------------------------------------

    def stats(self) -> JobStats:
        """A fresh sample.  ``unbounded`` while the worker runs, then ``completed``
        (with the destination's completed statistics, including downtime),
        ``cancelled`` (after :meth:`abort`) or ``failed``."""
        if self.done:
            return self._final_stats()
        try:
            raw = self.domain.jobStats()
        except libvirt.libvirtError as exc:
            # The domain left this host (or the job ended) between two samples.
            LOG.debug("jobStats of %s failed: %s", self.domain.name(), exc)
            if self.wait(5.0):
                return self._final_stats()
            return self.last
        sample = job_stats_from_libvirt(raw, self._in_postcopy())
        if sample.job_type in ("none", "completed", "failed", "cancelled"):
            # libvirt's job ended or has not started yet; the worker decides the outcome.
            # Such a sample is empty: keep the last real one for the final statistics.
            sample.job_type = "unbounded"
            if self.last.data_total:
                return self.last
        self.last = sample
        return sample

    def _final_stats(self) -> JobStats:
        with self._lock:
            if self._final is not None:
                return self._final
            if self.error is None:
                raw = None
                if self._completed_stats is not None:
                    try:
                        raw = self._completed_stats()
                    except Exception as exc:  # noqa: BLE001 - stats are best effort
                        LOG.info("completed job stats unavailable: %s", exc)
                if raw and int(raw.get("type", 0)) == libvirt.VIR_DOMAIN_JOB_COMPLETED:
                    final = job_stats_from_libvirt(raw, self.postcopy_started)
                else:
                    # Nothing measured the end of the job: report how far the last
                    # sample got, nothing remaining, and no downtime at all.
                    LOG.warning("no completed job statistics for %s: downtime, bytes "
                                "and time are not measured (last sample kept)",
                                self.domain.name())
                    final = JobStats.from_primitive(self.last.to_primitive())
                    final.data_remaining = 0
                    final.memory_remaining = 0
                    final.downtime_ms = 0
                    final.downtime_measured = False
                    final.postcopy = final.postcopy or self.postcopy_started
                final.job_type = "completed"
            else:
                final = JobStats.from_primitive(self.last.to_primitive())
                final.job_type = "cancelled" if self.aborted else "failed"
            self._final = final
            return final

    def _in_postcopy(self) -> bool:
        # Only this job switches to post-copy (start_postcopy), so it knows.  The
        # domain state is deliberately not polled: virDomainGetState was seen to
        # block for as long as a throttled migration runs.
        return self.postcopy_started

    def set_max_downtime(self, downtime_ms: int) -> None:
        """``migrateSetMaxDowntime``; ignored once the job ended."""
        if self.done:
            return
        try:
            self.domain.migrateSetMaxDowntime(int(downtime_ms), 0)
        except libvirt.libvirtError as exc:
            if not self.done:
                raise
            LOG.debug("max downtime not set, the job ended: %s", exc)

    def abort(self) -> None:
        """``abortJob``: cancel the migration; the guest keeps running on the source.

        A no-op once the job ended; safe to call twice.  Refused once post-copy started
        (the guest then runs on the destination and aborting would lose it).
        """
        if self.done:
            return
        if self.postcopy_started:
            raise LiveMigrationAborted(
                f"cannot abort the migration of {self.domain.name()}: post-copy has "
                "started and the guest already runs on the destination"
            )
        self.aborted = True
        try:
            self.domain.abortJob()
        except libvirt.libvirtError as exc:
            if not self.done:
                raise
            LOG.debug("abortJob after the job ended: %s", exc)

    def start_postcopy(self) -> None:
        """``migrateStartPostCopy``; NotSupported if the job did not start with
        VIR_MIGRATE_POSTCOPY."""
        if not self.postcopy_permitted:
            raise NotSupported(
                "libvirt", "post-copy", "the migration was not started with POSTCOPY "
                "(set [libvirt] live_migration_permit_post_copy or use a post-copy policy)"
            )
        if self.done or self.postcopy_started:
            return
        self.domain.migrateStartPostCopy(0)
        self.postcopy_started = True

    def set_cpu_throttle(self, percent: int) -> None:
        """Refused: libvirt offers no call that changes a guest's CPU time while a
        migration job runs (``virDomainSetSchedulerParameters`` is itself a job that
        waits for the migration to end; measured: it times out after 30 s).  A limit
        is set before the job starts instead (the ``cpu_limit`` start parameter: the
        vCPUs' CFS bandwidth), or QEMU's auto-converge steps
        (``cpu_throttle_initial`` / ``_increment``)."""
        raise NotSupported(
            "libvirt", "changing the CPU throttle of a running migration",
            "libvirt changes a guest's CPU time only while no migration job runs; the "
            "CPU limit and QEMU's auto-converge steps are set when the migration starts")

    def pause(self) -> None:
        """``suspend`` the guest so its memory stops changing; the destination resumes it
        when the migration completes."""
        if self.done or self.paused:
            return
        self.domain.suspend()
        self.paused = True
