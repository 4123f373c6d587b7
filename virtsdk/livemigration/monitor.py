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

from virtsdk.exceptions import NotSupported
from virtsdk.livemigration.base import Action, ConvergencePolicy, MigrationJob
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


class _Applier:
    """Applies policy actions to the job, each kind at most once where repeating it
    makes no sense (abort, post-copy, pause).  ``downtime_steps`` lists every max
    downtime the job accepted, in order (a call that raised is not a step)."""

    def __init__(self, job: MigrationJob, downtime_steps: list[int]) -> None:
        self.job = job
        self.done: set[str] = set()
        self.downtime_steps = downtime_steps

    def stamp(self, stats: JobStats) -> JobStats:
        """``stats`` with ``max_downtime_ms`` set to the last applied step (unchanged,
        the job's own value, while no step was applied)."""
        if not self.downtime_steps or stats.max_downtime_ms == self.downtime_steps[-1]:
            return stats
        return dataclasses.replace(stats, max_downtime_ms=self.downtime_steps[-1])

    def apply(self, action: Action, stats: JobStats) -> None:
        if Action.ABORT in self.done:
            return  # the job is being cancelled: nothing else matters
        try:
            if action.kind == Action.SET_DOWNTIME:
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
                    return
                self.done.add(Action.POSTCOPY)
                LOG.info("live migration: switching to post-copy (%s)", action.reason)
                try:
                    self.job.start_postcopy()
                except NotSupported as exc:
                    LOG.warning("live migration: post-copy refused (%s); pausing", exc)
                    self._pause(action)
            elif action.kind == Action.PAUSE:
                self._pause(action)
            else:
                LOG.error("live migration: policy asked for unknown action %r", action)
        except Exception:  # the job may have ended meanwhile
            LOG.exception("live migration: action %s failed", action)

    def _pause(self, action: Action) -> None:
        if Action.PAUSE in self.done:
            return
        self.done.add(Action.PAUSE)
        LOG.info("live migration: pausing the guest (%s)", action.reason)
        self.job.pause()


def monitor_migration(
    job: MigrationJob,
    policies: list[ConvergencePolicy],
    progress: Callable[[JobStats], None] | None = None,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    data_gb: float | None = None,
    downtime_steps: list[int] | None = None,
) -> JobStats:
    """Watch ``job`` until it ends and return its final stats.

    Every ``interval`` seconds (measured with ``clock``, waited with ``sleep``) it takes
    a sample, hands it to ``progress`` (samples whose ``progress`` never decreases),
    asks each policy in order for actions and applies them: ``set_downtime`` ->
    ``job.set_max_downtime``, ``abort`` -> ``job.abort`` (once; later actions are
    ignored), ``postcopy`` -> ``job.start_postcopy`` (once; a job that raises
    NotSupported is paused instead), ``pause`` -> ``job.pause`` (once).

    Every sample handed to ``progress`` (and the one returned) carries in
    ``max_downtime_ms`` the last max downtime applied (the job's own value before the
    first step).  A step is applied after a sample, so the next sample shows it; two
    steps applied between the same two samples show only the later one.  The caller
    that wants every step may pass a ``downtime_steps`` list: the monitor appends each
    max downtime the job accepted, in order.

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
    applier = _Applier(job, downtime_steps if downtime_steps is not None else [])
    started = False
    while True:
        raw = job.stats()
        elapsed = clock() - start
        if not started:
            if data_gb is None:
                data_gb = raw.data_total / GiB
            for policy in policies:
                policy.start(data_gb)
            started = True
        stats = applier.stamp(mono.apply(raw))
        if progress is not None:
            progress(stats)
        if stats.job_type in TERMINAL_JOB_TYPES:
            LOG.info("live migration ended: %s after %.1fs, iteration %d, downtime %d ms",
                     stats.job_type, elapsed, stats.memory_iteration, stats.downtime_ms)
            return stats
        for policy in policies:
            for action in policy.decide(stats, elapsed):
                applier.apply(action, stats)
        sleep(interval)
