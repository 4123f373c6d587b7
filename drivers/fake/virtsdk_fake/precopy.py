"""A simulated live-migration job: disk mirror, pre-copy rounds, post-copy.

The model (docs/flows.md, "The pre-copy model"): with bandwidth B and a guest dirtying D bytes/s
of a working set W, each pre-copy round sends what the previous one left dirty; the
switch-over happens as soon as everything still pending (unsent + re-dirtied) fits in
``B * max_downtime``.  With D >= B and W large that never happens.  Auto-converge
throttles the guest (``throttle_initial`` 20%, then +``throttle_increment`` 10% per
round up to 99%), and :meth:`set_cpu_throttle` sets the throttle at once; pausing
stops dirtying; post-copy moves the guest at once and pulls the rest.  The downtime
of a completed job is the simulation's own (``downtime_measured``).

The job advances lazily: every :meth:`stats` call integrates the model up to
``clock.now()``, so it runs in the thread of whoever samples it (the monitor) and
needs no thread of its own.  With ``bandwidth_of`` the bandwidth is asked for again at
each sample and holds since the previous one (links shared with other migrations).
Fault steps (``live_migration.iteration``, ``live_migration.switchover``) fire outside
the job's lock, so a stalled step never blocks :meth:`abort`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from virtsdk.exceptions import MigrationError, NotSupported
from virtsdk.objects import JobStats
from virtsdk_fake.clock import Clock

RUNNING = "unbounded"
#: bytes below which a remainder counts as sent (float rounding of budget = rate * dt)
_EPS = 1.0
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class SimulatedLiveMigration:
    """One running fake live migration; implements
    :class:`virtsdk.live_migration.base.MigrationJob`.

    ``switch_over`` is called (outside the job lock) exactly once, when the guest
    moves to the destination; ``hit(step)`` is the fabric's fault hook; ``pause_guest``
    is called when the guest is paused.  Sizes are bytes, rates bytes per second.
    """

    def __init__(self, *, clock: Clock, memory_bytes: int, disk_bytes: int,
                 bandwidth_bps: float, dirty_rate_bps: float, working_set_bytes: int,
                 max_downtime_ms: int, flags: set[str], step_s: float,
                 switch_over: Callable[[], None], hit: Callable[[str], None],
                 pause_guest: Callable[[], None] | None = None,
                 throttle_initial: int = 20, throttle_increment: int = 10,
                 dest: str = "",
                 bandwidth_of: Callable[[], float] | None = None) -> None:
        if bandwidth_bps <= 0:
            raise ValueError("bandwidth must be > 0")
        self.clock = clock
        self.flags = set(flags)
        self.step_s = step_s
        self._switch_over = switch_over
        self._hit = hit
        self._pause_guest = pause_guest
        self._lock = threading.Lock()
        self.memory_total = memory_bytes
        self.disk_total = disk_bytes
        self.bandwidth = float(bandwidth_bps)
        #: the destination host (for the fabric's link sharing)
        self.dest = dest
        self._bandwidth_of = bandwidth_of
        self.dirty_rate = float(dirty_rate_bps)
        self.working_set = float(min(working_set_bytes, memory_bytes))
        self.max_downtime_ms = max_downtime_ms
        self.started = clock.now()
        self._t = self.started
        self.phase = "disk" if disk_bytes > 0 else "memory"
        self.disk_remaining = float(disk_bytes)
        self.round_remaining = float(memory_bytes)
        self.dirty = 0.0
        self.memory_processed = 0.0
        self.iteration = 0 if self.phase == "disk" else 1
        self.throttle = 0.0
        self.throttle_initial = min(99, max(1, throttle_initial)) / 100.0
        self.throttle_increment = min(99, max(1, throttle_increment)) / 100.0
        self.paused = False
        self.postcopy = False
        self.downtime_ms = 0
        self.job_type = RUNNING
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self._abort_requested = False
        self._postcopy_requested = False
        self._switching = False
        self.downtime_history: list[int] = [max_downtime_ms]

    # -- MigrationJob --------------------------------------------------------------------

    def stats(self) -> JobStats:
        """Advance the simulation to now and return a sample."""
        self._run_to(self.clock.now())
        return self.snapshot()

    def set_max_downtime(self, downtime_ms: int) -> None:
        with self._lock:
            self.max_downtime_ms = int(downtime_ms)
            self.downtime_history.append(int(downtime_ms))

    def abort(self) -> None:
        """Cancel: the guest stays on the source.  Refused once in post-copy (the
        guest already runs on the destination); a no-op on an ended job."""
        with self._lock:
            if self.job_type in TERMINAL:
                return
            if self.postcopy:
                raise MigrationError("cannot abort a live migration in post-copy: "
                                     "the guest already runs on the destination")
            self._abort_requested = True
            if not self._switching:
                self._end("cancelled")

    def start_postcopy(self) -> None:
        """Switch to post-copy at the next step (needs the ``postcopy`` start flag)."""
        if "postcopy" not in self.flags:
            raise NotSupported("fake", "post-copy",
                               "the migration was not started with the postcopy flag")
        self._hit("live_migration.postcopy")
        with self._lock:
            if self.job_type == RUNNING and not self.postcopy:
                self._postcopy_requested = True

    def set_cpu_throttle(self, percent: int) -> None:
        """Throttle the guest's CPU (and so its dirtying) by ``percent`` from now on."""
        with self._lock:
            self.throttle = min(99, max(0, int(percent))) / 100.0

    def pause(self) -> None:
        """Pause the guest: it stops dirtying memory, so pre-copy converges."""
        with self._lock:
            if self.paused or self.job_type != RUNNING:
                return
            self.paused = True
        if self._pause_guest is not None:
            self._pause_guest()

    # -- simulation ----------------------------------------------------------------------

    def _end(self, job_type: str) -> None:
        self.job_type = job_type
        self.ended_at = self._t

    def _effective_dirty_rate(self) -> float:
        if self.paused or self.postcopy:
            return 0.0
        return self.dirty_rate * (1.0 - self.throttle)

    def _integrate(self, now: float) -> str | None:
        """Advance (lock held) until ``now`` or an event; returns the event name."""
        while self.job_type == RUNNING and self._t < now:
            if self._postcopy_requested and self.phase == "memory":
                return "postcopy"
            h = min(self.step_s, now - self._t)
            self._t += h
            budget = self.bandwidth * h
            if self.phase == "disk":
                sent = min(budget, self.disk_remaining)
                self.disk_remaining -= sent
                if self.disk_remaining <= _EPS:
                    self.disk_remaining = 0.0
                    self.phase = "memory"
                    self.iteration = 1
                    return "iteration"
                continue
            sent = min(budget, self.round_remaining)
            self.round_remaining -= sent
            self.memory_processed += sent
            if self.round_remaining <= _EPS:
                self.round_remaining = 0.0
            if self.postcopy:
                if self.round_remaining <= 0:
                    self._end("completed")
                continue
            self.dirty = min(self.working_set, self.dirty + self._effective_dirty_rate() * h)
            pending = self.round_remaining + self.dirty
            if pending <= self.bandwidth * self.max_downtime_ms / 1000.0:
                self.downtime_ms = max(1, int(1000.0 * pending / self.bandwidth))
                return "switchover"
            if self.round_remaining <= 0:
                self.iteration += 1
                self.round_remaining, self.dirty = self.dirty, 0.0
                if "auto_converge" in self.flags:
                    self.throttle = self.throttle_initial if self.throttle == 0 else \
                        min(0.99, self.throttle + self.throttle_increment)
                return "iteration"
        return None

    def _run_to(self, now: float) -> None:
        if self._bandwidth_of is not None and self.job_type == RUNNING:
            bandwidth = self._bandwidth_of()  # outside the lock: it reads other jobs
            with self._lock:
                self.bandwidth = max(1.0, bandwidth)
        while True:
            with self._lock:
                event = self._integrate(now)
                if event in ("switchover", "postcopy"):
                    self._switching = True
            if event is None:
                return
            try:
                if event == "iteration":
                    self._hit("live_migration.iteration")
                    continue
                self._hit("live_migration.switchover")
                with self._lock:
                    if self._abort_requested:
                        self._switching = False
                        self._end("cancelled")
                        return
                self._switch_over()
            except Exception as exc:  # noqa: BLE001 - becomes the job's failure
                with self._lock:
                    self._switching = False
                    self.error = exc
                    self._end("failed")
                return
            with self._lock:
                self._switching = False
                if event == "postcopy":
                    self.postcopy = True
                    self._postcopy_requested = False
                    self.round_remaining += self.dirty
                    self.dirty = 0.0
                    self.downtime_ms = max(1, int(1000.0 * 4096 * 64 / self.bandwidth))
                    if self.round_remaining <= 0:
                        self._end("completed")
                else:
                    self.memory_processed += self.round_remaining + self.dirty
                    self.round_remaining = self.dirty = 0.0
                    self._end("completed")

    # -- reporting -----------------------------------------------------------------------

    def snapshot(self) -> JobStats:
        with self._lock:
            if self.phase == "disk":
                mem_remaining = self.memory_total
            else:
                mem_remaining = int(min(self.memory_total, self.round_remaining + self.dirty))
            disk_remaining = int(self.disk_remaining)
            disk_processed = self.disk_total - disk_remaining
            end = self.ended_at if self.ended_at is not None else self._t
            return JobStats(
                job_type=self.job_type,
                time_elapsed_ms=int(1000 * (end - self.started)),
                data_total=self.memory_total + self.disk_total,
                data_processed=int(self.memory_processed) + disk_processed,
                data_remaining=mem_remaining + disk_remaining,
                memory_total=self.memory_total,
                memory_processed=int(self.memory_processed),
                memory_remaining=mem_remaining,
                memory_bps=int(self.bandwidth),
                memory_dirty_rate=int(self._effective_dirty_rate()),
                memory_iteration=self.iteration,
                disk_total=self.disk_total,
                disk_processed=disk_processed,
                disk_remaining=disk_remaining,
                downtime_ms=self.downtime_ms if self.job_type == "completed" else 0,
                downtime_measured=self.job_type == "completed",
                expected_downtime_ms=self.downtime_ms if self.job_type != "completed" else 0,
                postcopy=self.postcopy,
                cpu_throttle=round(100 * self.throttle),
            )
