"""The live-migration monitor loop shared by every driver.

A driver's ``live_migration`` (source host) starts its job, then calls
:func:`monitor_migration` in the same thread; the call returns when the job has ended
(completed, failed or cancelled) and the driver then calls ``post_method`` or
``recover_method``.  The monitor never raises for a job that ended badly: the final
stats say how it ended.  It raises only when sampling the job itself fails.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from virtsdk.exceptions import NotSupported
from virtsdk.live_migration.base import Action, ConvergencePolicy, MigrationJob
from virtsdk.objects import JobStats

LOG = logging.getLogger(__name__)

#: ``JobStats.job_type`` values that end a migration.
TERMINAL_JOB_TYPES = frozenset({"completed", "failed", "cancelled"})

GiB = 1024**3


class MonotonicProgress:
    """Turns raw samples into samples whose ``progress`` never decreases.

    ``data_remaining`` of the reported copy is lowered, when needed, to the smallest
    fraction of ``data_total`` seen so far; every other field is the raw value.
    """

    def __init__(self) -> None:
        self.best = 0.0

    def apply(self, stats: JobStats) -> JobStats:
        raw = stats.progress
        if stats.job_type == "completed":
            raw = 100.0
        if raw >= self.best:
            self.best = raw
            if stats.job_type == "completed" and stats.data_remaining:
                return dataclasses.replace(stats, data_remaining=0)
            return stats
        ceiling = math.floor(stats.data_total * (100.0 - self.best) / 100.0)
        return dataclasses.replace(stats, data_remaining=min(stats.data_remaining, ceiling))


def decision_entry(action: Action, stats: JobStats, elapsed_s: float,
                   outcome: str = "applied") -> dict[str, Any]:
    """One timeline entry: what was decided, when, and the raw numbers it saw."""
    return {
        "t_s": round(elapsed_s, 2),
        "action": action.kind,
        "value": int(action.value),
        "reason": action.reason,
        "outcome": outcome,
        "iteration": stats.memory_iteration,
        "remaining": stats.data_remaining,
        "dirty_rate": stats.memory_dirty_rate,
        "bandwidth": stats.memory_bps,
        "max_downtime_ms": stats.max_downtime_ms,
        "cpu_throttle": stats.cpu_throttle,
    }


class _Applier:
    """Applies policy actions to the job, each kind at most once where repeating it
    makes no sense (abort, post-copy, pause).  ``downtime_steps`` lists every max
    downtime the job accepted, in order (a call that raised is not a step);
    ``timeline`` gets one entry per decision (:func:`decision_entry`)."""

    def __init__(self, job: MigrationJob, downtime_steps: list[int],
                 timeline: list[dict[str, Any]]) -> None:
        self.job = job
        self.done: set[str] = set()
        self.downtime_steps = downtime_steps
        self.timeline = timeline
        self.throttle = 0

    def stamp(self, stats: JobStats) -> JobStats:
        """``stats`` with ``max_downtime_ms`` set to the last applied step (unchanged,
        the job's own value, while no step was applied)."""
        if not self.downtime_steps or stats.max_downtime_ms == self.downtime_steps[-1]:
            return stats
        return dataclasses.replace(stats, max_downtime_ms=self.downtime_steps[-1])

    def stamp_throttle(self, stats: JobStats) -> JobStats:
        """``stats`` with ``cpu_throttle`` set to the throttle applied last when the
        job itself does not report one."""
        if stats.cpu_throttle or not self.throttle:
            return stats
        return dataclasses.replace(stats, cpu_throttle=self.throttle)

    def apply(self, action: Action, stats: JobStats, elapsed_s: float) -> None:
        if Action.ABORT in self.done:
            return  # the job is being cancelled: nothing else matters
        outcome = self._apply(action, stats)
        if outcome:
            self.timeline.append(decision_entry(action, stats, elapsed_s, outcome))

    def _apply(self, action: Action, stats: JobStats) -> str:
        """Apply one action; returns what happened ("" for a repeat not worth a
        timeline entry)."""
        try:
            if action.kind == Action.NOTE:
                LOG.info("live migration: %s", action.reason)
            elif action.kind == Action.THROTTLE:
                LOG.info("live migration: CPU throttle -> %d%% (%s)", action.value,
                         action.reason)
                try:
                    self.job.set_cpu_throttle(int(action.value))
                except NotSupported as exc:
                    LOG.warning("live migration: CPU throttle refused (%s)", exc)
                    return f"refused: {exc}"
                self.throttle = int(action.value)
            elif action.kind == Action.SET_DOWNTIME:
                LOG.info("live migration: max downtime -> %d ms (%s)",
                         action.value, action.reason)
                self.job.set_max_downtime(action.value)
                self.downtime_steps.append(int(action.value))
            elif action.kind == Action.ABORT:
                LOG.warning("live migration: aborting (%s)", action.reason)
                self.done.add(Action.ABORT)
                self.job.abort()
            elif action.kind == Action.POSTCOPY:
                if stats.postcopy or Action.POSTCOPY in self.done:
                    return ""
                self.done.add(Action.POSTCOPY)
                LOG.info("live migration: switching to post-copy (%s)", action.reason)
                try:
                    self.job.start_postcopy()
                except NotSupported as exc:
                    LOG.warning("live migration: post-copy refused (%s); pausing", exc)
                    return "refused; " + self._pause(action)
            elif action.kind == Action.PAUSE:
                return self._pause(action)
            else:
                LOG.error("live migration: policy asked for unknown action %r", action)
                return "unknown action"
        except Exception as exc:  # the job may have ended meanwhile
            LOG.exception("live migration: action %s failed", action)
            return f"failed: {exc}"
        return "applied"

    def _pause(self, action: Action) -> str:
        if Action.PAUSE in self.done:
            return ""
        self.done.add(Action.PAUSE)
        LOG.info("live migration: pausing the guest (%s)", action.reason)
        self.job.pause()
        return "paused"


def monitor_migration(
    job: MigrationJob,
    policies: list[ConvergencePolicy],
    progress: Callable[[JobStats], None] | None = None,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    data_gb: float | None = None,
    downtime_steps: list[int] | None = None,
    timeline: list[dict[str, Any]] | None = None,
) -> JobStats:
    """Watch ``job`` until it ends and return its final stats.

    Every ``interval`` seconds (measured with ``clock``, waited with ``sleep``) it takes
    a sample, hands it to ``progress`` (samples whose ``progress`` never decreases),
    asks each policy in order for actions on the *raw* sample (the true remaining data,
    dirty rate and iteration, never the clamped copy the progress bar gets) and applies
    them: ``set_downtime`` -> ``job.set_max_downtime``, ``throttle`` ->
    ``job.set_cpu_throttle``, ``abort`` -> ``job.abort`` (once; later actions are
    ignored), ``postcopy`` -> ``job.start_postcopy`` (once; a job that raises
    NotSupported is paused instead), ``pause`` -> ``job.pause`` (once), ``note`` ->
    logged only.

    Every decision is logged with its numbers and appended to the timeline (``timeline``
    when the caller passes a list): a dict per decision from :func:`decision_entry`.
    Every sample handed to ``progress`` (and the one returned) carries the timeline so
    far in ``timeline`` and in ``max_downtime_ms`` the last max downtime applied (the
    job's own value before the first step).  A step is applied after a sample, so the
    next sample shows it; two steps applied between the same two samples show only the
    later one.  The caller that wants every step may pass a ``downtime_steps`` list:
    the monitor appends each max downtime the job accepted, in order.

    A job that ends cancelled or failed with an empty sample (a hypervisor forgets the
    job's counters once it is cancelled) is reported with the counters of the last
    real sample, so the record shows how far it got.

    ``data_gb`` (RAM + disk to move, GiB) starts the policies; when None it is taken
    from the first sample's ``data_total``.  Returns the last sample, whose
    ``job_type`` is ``completed``, ``failed`` or ``cancelled``.  Exceptions from
    ``job.stats()`` and from ``progress`` propagate; the caller must then abort the
    job itself.  An action that fails (the job may have just ended) is logged.
    """
    if interval <= 0:
        raise ValueError(f"monitor interval must be > 0, got {interval}")
    start = clock()
    mono = MonotonicProgress()
    decisions = timeline if timeline is not None else []
    applier = _Applier(job, downtime_steps if downtime_steps is not None else [],
                       decisions)
    started = False
    last_real: JobStats | None = None
    while True:
        raw = job.stats()
        elapsed = clock() - start
        if not started:
            if data_gb is None:
                data_gb = raw.data_total / GiB
            for policy in policies:
                policy.start(data_gb)
            started = True
        if raw.job_type in ("cancelled", "failed") and raw.data_total == 0 and \
                last_real is not None:
            raw = dataclasses.replace(last_real, job_type=raw.job_type,
                                      downtime_ms=0, downtime_measured=False)
        elif raw.data_total > 0:
            last_real = raw
        raw = applier.stamp_throttle(applier.stamp(raw))
        stats = dataclasses.replace(mono.apply(raw), timeline=list(decisions))
        if progress is not None:
            progress(stats)
        if stats.job_type in TERMINAL_JOB_TYPES:
            LOG.info("live migration ended: %s after %.1fs, iteration %d, %s, %d bytes "
                     "sent", stats.job_type, elapsed, stats.memory_iteration,
                     f"downtime {stats.downtime_ms} ms" if stats.downtime_measured
                     else "no downtime measurement", stats.data_processed)
            return stats
        for policy in policies:
            for action in policy.decide(raw, elapsed):
                applier.apply(action, raw, elapsed)
        sleep(interval)
