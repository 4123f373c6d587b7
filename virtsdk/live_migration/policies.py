"""The convergence policies shipped with virtsdk (entry-point group
``virtsdk.convergence_policies``).

Each policy is built for one migration (by :func:`virtsdk.live_migration.loader.load_policies`
on the source host), started once with the GiB of RAM + disk to move, then asked by
:func:`virtsdk.live_migration.monitor.monitor_migration` what to do with every job-stats
sample.  Policies only decide; the monitor applies their :class:`Action` s to the job.
Every constructor takes plain keyword arguments (for tests and other callers) and
:meth:`from_conf` reads them from the ``[live_migration]`` group.
"""

from __future__ import annotations

import math
from typing import Self

from oslo_config import cfg

from virtsdk.live_migration.base import Action, ConvergencePolicy
from virtsdk.objects import JobStats


def _group(conf: cfg.ConfigOpts) -> cfg.ConfigOpts.GroupAttr:
    group: cfg.ConfigOpts.GroupAttr = conf.live_migration
    return group


class _Scheduled(ConvergencePolicy):
    """A policy that walks a fixed schedule of (seconds, downtime ms) steps."""

    def __init__(self, downtime_ms: int = 500, steps: int = 10, delay_s_per_gib: float = 75.0
                 ) -> None:
        if downtime_ms <= 0 or steps < 1 or delay_s_per_gib < 0:
            raise ValueError(
                f"{self.name}: downtime_ms must be > 0, steps >= 1 and delay >= 0 "
                f"(got {downtime_ms}, {steps}, {delay_s_per_gib})"
            )
        self.downtime_ms = downtime_ms
        self.steps = steps
        self.delay_s_per_gib = delay_s_per_gib
        self.data_gb = 0.0
        self._plan: list[tuple[float, int]] = []
        self._next = 0

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Self:
        g = _group(conf)
        return cls(g.downtime, g.downtime_steps, g.downtime_delay)

    def values(self) -> list[int]:
        """The downtime (ms) of each step, in order."""
        raise NotImplementedError

    def step_times(self, data_gb: float) -> list[float]:
        """Seconds into the migration at which each step applies: step i of N at
        ``delay * data_gb * i / N`` (the first step at once)."""
        n = len(self.values()) - 1 or 1
        return [self.delay_s_per_gib * data_gb * i / n for i in range(len(self.values()))]

    def schedule(self, data_gb: float) -> list[tuple[float, int]]:
        """The whole schedule for ``data_gb``: ``[(seconds, downtime_ms), ...]``."""
        return list(zip(self.step_times(data_gb), self.values(), strict=True))

    def start(self, data_gb: float) -> None:
        self.data_gb = data_gb
        self._plan = self.schedule(data_gb)
        self._next = 0

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        """Sets the downtime of the latest step whose time has come (once per step)."""
        due = None
        while self._next < len(self._plan) and self._plan[self._next][0] <= elapsed_s:
            due = self._plan[self._next]
            self._next += 1
        if due is None:
            return []
        return [Action(Action.SET_DOWNTIME, due[1], f"{self.name} step at {due[0]:.1f}s")]


class LinearDowntimeSteps(_Scheduled):
    """Nova's schedule (``live_migration_downtime``, ``_steps``, ``_delay``): N+1
    steps from D/N up to D ms, one every ``int(delay * data_gb)`` seconds.

    Step i (0..N) sets ``D/N + (D - D/N) / N * i`` ms (truncated) at
    ``i * int(delay * data_gb)`` seconds; with D=500, N=10, delay=75 and 4 GiB of RAM:
    50 ms at once, 95 ms at 300 s, ... 500 ms at 3000 s.  For a guest under
    1/delay GiB every step happens at once, as in Nova.
    """

    name = "linear_downtime"

    def step_times(self, data_gb: float) -> list[float]:
        period = int(self.delay_s_per_gib * data_gb)
        return [float(period * i) for i in range(len(self.values()))]

    def values(self) -> list[int]:
        d, n = self.downtime_ms, self.steps
        base = d / n
        offset = (d - base) / n
        return [int(base + offset * i) for i in range(n + 1)]


class ExponentialDowntimeSteps(_Scheduled):
    """oVirt VDSM's schedule: N steps growing exponentially up to D ms.

    ``offset = D/N``, ``base = (D - offset) ** (1/(N-1))``, step i (0..N-1) sets
    ``offset + base**i`` (truncated); with D=500, N=5: 101, 104, 120, 189, 500.
    """

    name = "exponential_downtime"

    def __init__(self, downtime_ms: int = 500, steps: int = 5, delay_s_per_gib: float = 75.0
                 ) -> None:
        super().__init__(downtime_ms, steps, delay_s_per_gib)
        if steps < 2:
            raise ValueError("exponential_downtime needs at least 2 steps")

    def values(self) -> list[int]:
        d, n = self.downtime_ms, self.steps
        offset = d / n
        base = (d - offset) ** (1.0 / (n - 1))
        # round away float noise before truncating (base**(n-1) == d - offset exactly)
        return [int(round(offset + base**i, 9)) for i in range(n)]


class CompletionTimeout(ConvergencePolicy):
    """Gives a migration ``timeout_per_gib * data_gb`` seconds, then aborts it or
    forces it to complete (post-copy if permitted, else pause).  Acts once."""

    name = "completion_timeout"

    def __init__(self, timeout_per_gib: float = 800.0, action: str = "abort",
                 permit_post_copy: bool = False) -> None:
        if action not in ("abort", "force_complete"):
            raise ValueError(f"completion_timeout: unknown action {action!r} "
                             "(expected 'abort' or 'force_complete')")
        if timeout_per_gib < 0:
            raise ValueError("completion_timeout: timeout_per_gib must be >= 0")
        self.timeout_per_gib = timeout_per_gib
        self.action = action
        self.permit_post_copy = permit_post_copy
        self.data_gb = 0.0
        self._fired = False

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Self:
        g = _group(conf)
        return cls(g.completion_timeout, g.timeout_action, g.permit_post_copy)

    def migration_flags(self) -> set[str]:
        if self.action == "force_complete" and self.permit_post_copy:
            return {"postcopy"}
        return set()

    @property
    def timeout_s(self) -> float:
        """Seconds allowed for this migration (0: no limit)."""
        return self.timeout_per_gib * self.data_gb

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        if self._fired or self.timeout_s <= 0 or elapsed_s <= self.timeout_s:
            return []
        self._fired = True
        reason = f"not complete after {elapsed_s:.0f}s (limit {self.timeout_s:.0f}s)"
        if self.action == "abort":
            return [Action(Action.ABORT, reason=reason)]
        if stats.postcopy:
            return []
        kind = Action.POSTCOPY if self.permit_post_copy else Action.PAUSE
        return [Action(kind, reason=reason)]


class StallDetection(ConvergencePolicy):
    """Acts when the remaining data has not reached a new minimum for ``window_s``
    seconds (KubeVirt's progress timeout): abort, or switch to post-copy.  Acts once."""

    name = "stall_detection"

    def __init__(self, window_s: float = 150.0, action: str = "abort") -> None:
        if action not in ("abort", "postcopy"):
            raise ValueError(f"stall_detection: unknown action {action!r} "
                             "(expected 'abort' or 'postcopy')")
        if window_s <= 0:
            raise ValueError("stall_detection: window_s must be > 0")
        self.window_s = window_s
        self.action = action
        self._best: int | None = None
        self._best_at = 0.0
        self._fired = False

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Self:
        g = _group(conf)
        return cls(g.stall_window, g.stall_action)

    def migration_flags(self) -> set[str]:
        return {"postcopy"} if self.action == "postcopy" else set()

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        if self._fired or stats.postcopy:
            return []
        remaining = stats.data_remaining
        if self._best is None or remaining < self._best:
            self._best, self._best_at = remaining, elapsed_s
            return []
        stalled_for = elapsed_s - self._best_at
        if stalled_for < self.window_s:
            return []
        self._fired = True
        reason = (f"remaining data stuck at >= {self._best} bytes for "
                  f"{stalled_for:.0f}s (window {self.window_s:.0f}s)")
        kind = Action.ABORT if self.action == "abort" else Action.POSTCOPY
        return [Action(kind, reason=reason)]


class PostCopySwitch(ConvergencePolicy):
    """Switches to post-copy once the memory iteration reaches ``after_iterations``,
    or earlier when a finished iteration cut the remaining data by less than
    ``min_gain`` (10%) compared with the previous iteration.  Acts once."""

    name = "postcopy"

    def __init__(self, after_iterations: int = 5, min_gain: float = 0.10) -> None:
        if after_iterations < 1 or not 0 <= min_gain < 1:
            raise ValueError("postcopy: after_iterations >= 1 and 0 <= min_gain < 1")
        self.after_iterations = after_iterations
        self.min_gain = min_gain
        self._iteration = 0
        self._remaining_at_iteration: int | None = None
        self._fired = False

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Self:
        return cls(_group(conf).postcopy_after_iterations)

    def migration_flags(self) -> set[str]:
        return {"postcopy"}

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        if self._fired or stats.postcopy:
            return []
        if stats.memory_iteration >= self.after_iterations:
            self._fired = True
            return [Action(Action.POSTCOPY,
                           reason=f"memory iteration {stats.memory_iteration}")]
        if stats.memory_iteration <= self._iteration:
            return []
        # a new iteration began: compare its starting point with the previous one's
        previous = self._remaining_at_iteration
        self._iteration = stats.memory_iteration
        self._remaining_at_iteration = stats.data_remaining
        if previous is None or self._iteration < 2:
            return []
        if stats.data_remaining > previous * (1.0 - self.min_gain):
            self._fired = True
            return [Action(Action.POSTCOPY, reason=(
                f"iteration {self._iteration} left {stats.data_remaining} bytes, "
                f"previous {previous}: not converging"))]
        return []


class AutoConverge(ConvergencePolicy):
    """Starts the migration with CPU throttling (QEMU auto-converge); no actions."""

    name = "auto_converge"

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Self:
        return cls()

    def migration_flags(self) -> set[str]:
        return {"auto_converge"}

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        return []


def required_flags(policies: list[ConvergencePolicy]) -> set[str]:
    """Union of the start flags of ``policies`` (``postcopy``, ``auto_converge``);
    the driver sets them when it starts the job."""
    flags: set[str] = set()
    for policy in policies:
        flags |= policy.migration_flags()
    return flags


#: QEMU's auto-converge steps (percent) under a CPU limit of the ``adaptive`` controller
SAFETY_STEP = 5


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


class AdaptiveConvergence(ConvergencePolicy):
    """A convergence controller that predicts, from measured numbers, whether pre-copy
    will finish, and acts as soon as it will not.

    The model: with bandwidth ``B`` and a guest dirtying ``D`` bytes/s, each pre-copy
    pass re-sends what the previous one left dirty, so the remaining data ``R`` shrinks
    by ``rho = D / B`` per pass (never below what the guest's working set allows, see
    :meth:`predict`); QEMU switches over once what remains fits in
    ``B * max_downtime``.  For ``rho < 1`` pre-copy finishes in about
    ``R / (B * (1 - rho))`` seconds; for ``rho >= 1`` the remainder stays, and only a
    downtime of ``R / B`` (or a slower guest) lets it finish.

    Before the migration starts (:meth:`migration_params`), from the dirty rate the
    driver measured, it asks for the CPU limit that brings ``D`` down to
    ``target_ratio * B`` (``cpu_limit``: the guest's vCPUs get ``100 - limit`` percent
    of their time, in slices of milliseconds: the libvirt driver sets the vCPUs' CFS
    bandwidth, which libvirt can only change while no migration job runs).  The driver
    then measures the rate again under that limit (:meth:`limit_measured`) and the
    controller raises the limit while it does not bring the rate to the target: a guest
    that uses only part of its CPU slows down only once the limit cuts into that part.
    The job starts with QEMU's auto-converge as the safety net for a guest that turns
    busier later, in small steps (``SAFETY_STEP``) on top of the limit.  Neither when
    post-copy is permitted: post-copy finishes without slowing the guest down.

    Each time a new pass starts (a new dirty-rate measurement) the controller:

    1. raises the allowed downtime to what the remainder needs (``R / B`` plus a
       margin) when that is within the operator's limit ``downtime_ms``: QEMU switches
       over now;
    2. otherwise, when ``rho < 1`` and the predicted time fits before the completion
       timeout (with post-copy permitted: only while that time is within
       ``postcopy_tail`` of the time spent so far, post-copy being the faster end),
       allows the operator's limit at once, so QEMU switches over the moment the
       remainder fits, mid-pass too, rather than after another pass;
    3. otherwise, only where post-copy is permitted, switches to post-copy at once;
    4. otherwise sets the downtime to the limit and asks to throttle the guest's CPU by
       as much as brings ``rho`` down to ``target_ratio`` (``1 - target * B /
       D_unthrottled``, capped at ``max_throttle``); a driver that cannot change the
       throttle of a running job refuses, and the timeline says so.

    At ``timeout_per_gib * data_gb`` seconds it aborts or forces completion (post-copy
    when permitted, else pause), as configured.  Every decision is an action with the
    numbers in its reason; the monitor stores them in the migration's timeline.
    """

    name = "adaptive"
    wants_dirty_rate = True

    def __init__(self, downtime_ms: int = 500, initial_downtime_ms: int = 50,
                 permit_post_copy: bool = False, timeout_per_gib: float = 800.0,
                 timeout_action: str = "abort", target_ratio: float = 0.5,
                 max_throttle: int = 88, margin: float = 1.25,
                 postcopy_tail: float = 0.2) -> None:
        if downtime_ms <= 0 or not 0 < initial_downtime_ms <= downtime_ms:
            raise ValueError("adaptive: need 0 < initial_downtime_ms <= downtime_ms "
                             f"(got {initial_downtime_ms}, {downtime_ms})")
        if not 0 < target_ratio < 1 or not 0 <= max_throttle <= 99 or margin < 1 \
                or postcopy_tail < 0:
            raise ValueError("adaptive: need 0 < target_ratio < 1, 0 <= max_throttle "
                             "<= 99, margin >= 1 and postcopy_tail >= 0")
        if timeout_action not in ("abort", "force_complete") or timeout_per_gib < 0:
            raise ValueError("adaptive: timeout_action is 'abort' or 'force_complete' "
                             "and timeout_per_gib >= 0")
        self.downtime_ms = downtime_ms
        self.initial_downtime_ms = initial_downtime_ms
        self.permit_post_copy = permit_post_copy
        self.timeout_per_gib = timeout_per_gib
        self.timeout_action = timeout_action
        self.target_ratio = target_ratio
        self.max_throttle = max_throttle
        self.margin = margin
        self.postcopy_tail = postcopy_tail
        self.data_gb = 0.0
        self._started = False
        self._iteration = 0
        self._downtime = 0
        self._throttle_asked = 0
        self._limit = 0
        self._done = False
        self._cap = 0.0
        self._probe_dirty = 0.0
        self._wset = 0.0
        self._last_remaining = 0.0
        self._start_notes: list[str] = []
        self._recent_bps: list[int] = []

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Self:
        g = _group(conf)
        return cls(downtime_ms=g.downtime,
                   initial_downtime_ms=max(1, g.downtime // g.downtime_steps),
                   permit_post_copy=g.permit_post_copy,
                   timeout_per_gib=g.completion_timeout, timeout_action=g.timeout_action,
                   max_throttle=g.max_throttle)

    def migration_flags(self) -> set[str]:
        # without post-copy QEMU's auto-converge is the safety net for a guest that
        # turns out busier than measured before the start (a CPU limit cannot change
        # while the job runs): its default steps, or SAFETY_STEP under a limit
        return {"postcopy"} if self.permit_post_copy else {"auto_converge"}

    def needed_throttle(self, dirty_free_bps: float, bandwidth_bps: float) -> int:
        """Percent of CPU to take away so the guest dirties ``target_ratio * B``."""
        if dirty_free_bps <= 0 or bandwidth_bps <= 0:
            return 0
        need = 1.0 - self.target_ratio * bandwidth_bps / dirty_free_bps
        return max(0, min(self.max_throttle, math.ceil(100.0 * need)))

    def migration_params(self, bandwidth_bps: float, dirty_rate_bps: float) -> dict[str, int]:
        self._cap = max(0.0, bandwidth_bps)
        self._probe_dirty = max(0.0, dirty_rate_bps)
        throttle = self.needed_throttle(dirty_rate_bps, bandwidth_bps)
        if self.permit_post_copy:
            plan = "no CPU limit (post-copy permitted)"
            throttle = 0
        elif throttle > 0:
            plan = f"CPU limit {throttle}% for the migration"
        else:
            plan = "no CPU limit needed"
        self._limit = self._throttle_asked = throttle
        self._start_notes = [
            f"adaptive: measured before the start: dirty {_mib(dirty_rate_bps)}/s, "
            f"bandwidth cap {_mib(bandwidth_bps) + '/s' if bandwidth_bps else 'none'}; "
            + plan]
        if throttle <= 0:
            return {}
        # QEMU's auto-converge stays the safety net, in small steps: the limit (checked
        # by measuring under it before the start) does the slowing down
        return {"cpu_limit": throttle, "cpu_throttle_initial": SAFETY_STEP,
                "cpu_throttle_increment": SAFETY_STEP}

    def limit_measured(self, cpu_limit: int, dirty_rate_bps: float) -> int:
        """Raise the limit when the rate measured under it is still above
        ``target_ratio * B``: the guest's rate at full CPU is taken to be what it
        manages per share of CPU now (it runs CPU-bound under a limit that binds)."""
        if self.permit_post_copy or cpu_limit <= 0 or self._cap <= 0 \
                or dirty_rate_bps <= 0:
            return cpu_limit
        target = self.target_ratio * self._cap
        share = (100 - cpu_limit) / 100.0
        measured = (f"adaptive: measured under the {cpu_limit}% CPU limit: dirty "
                    f"{_mib(dirty_rate_bps)}/s (target {_mib(target)}/s)")
        wanted = self.needed_throttle(dirty_rate_bps / share, self._cap)
        if dirty_rate_bps <= target or wanted <= cpu_limit:
            self._start_notes.append(measured + "; kept")
            return cpu_limit
        self._probe_dirty = max(self._probe_dirty, dirty_rate_bps / share)
        self._limit = self._throttle_asked = wanted
        self._start_notes.append(f"{measured}; CPU limit {wanted}% for the migration")
        return wanted

    def params_refused(self, name: str, reason: str) -> None:
        if name == "cpu_limit" and self._limit:
            self._start_notes.append(f"adaptive: CPU limit {self._limit}% refused: {reason}")
            self._limit = self._throttle_asked = 0

    @property
    def timeout_s(self) -> float:
        return self.timeout_per_gib * self.data_gb

    def throttle_now(self, stats: JobStats) -> int:
        """The throttle (percent) the guest runs under: the CPU limit applied at the
        start combined with the job's own throttle (QEMU's auto-converge)."""
        share = (1.0 - min(99, max(0, stats.cpu_throttle)) / 100.0) * \
            (1.0 - self._limit / 100.0)
        return min(99, max(0, round(100.0 * (1.0 - share))))

    def predict(self, stats: JobStats) -> dict[str, float]:
        """The model's numbers for one raw sample at the start of a pass: bandwidth,
        dirty rate (as the model uses it, and unthrottled), the ratio ``rho`` of the
        next pass's remainder to this one's, the downtime the remainder needs now (ms)
        and the predicted seconds to converge (inf when it will not).

        Migration counts distinct dirty pages per pass, so over a long pass the
        measured rate is at most the guest's working set divided by the pass's time;
        the rate measured before the start (over a second) shows how fast the guest
        really writes.  The model takes the larger, throttled as now, and bounds what
        the next pass can leave by the largest remainder a pass started with (the
        working set seen so far); a remainder that did not shrink since the previous
        pass counts too."""
        b = self.bandwidth(stats)
        remaining = float(stats.data_remaining)
        throttle = self.throttle_now(stats) / 100.0
        d = max(float(stats.memory_dirty_rate), self._probe_dirty * (1.0 - throttle))
        self._wset = max(self._wset, remaining)
        if b > 0 and remaining > 0:
            next_pass = min(self._wset, d * remaining / b)
            rho = next_pass / remaining
            if self._last_remaining:
                rho = max(rho, min(1.0, remaining / self._last_remaining))
        else:
            rho = math.inf
        need_ms = 1000.0 * remaining / b if b > 0 else math.inf
        eta = remaining / (b * (1.0 - rho)) if rho < 1 else math.inf
        self._last_remaining = remaining
        return {"bandwidth": b, "dirty": d, "dirty_free": d / (1.0 - throttle),
                "rho": rho, "need_ms": need_ms, "eta_s": eta, "remaining": remaining}

    def bandwidth(self, stats: JobStats) -> float:
        """The bandwidth the model uses: the best of the last few measured rates (QEMU
        measures over 100 ms windows, which dip at pass boundaries), never above the
        configured cap."""
        b = float(max(self._recent_bps or [stats.memory_bps]))
        return min(b, self._cap) if self._cap > 0 and b > 0 else b

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        if stats.memory_bps > 0:
            self._recent_bps = [*self._recent_bps[-4:], stats.memory_bps]
        if self._done or stats.postcopy:
            return []
        actions: list[Action] = []
        if not self._started:
            self._started = True
            self._downtime = self.initial_downtime_ms
            actions += [Action(Action.NOTE, reason=note) for note in self._start_notes]
            actions.append(Action(Action.SET_DOWNTIME, self._downtime,
                                  f"adaptive: start at {self._downtime} ms "
                                  f"(limit {self.downtime_ms} ms)"))
        if self.timeout_s > 0 and elapsed_s > self.timeout_s:
            self._done = True
            reason = (f"adaptive: not complete after {elapsed_s:.0f}s "
                      f"(limit {self.timeout_s:.0f}s)")
            if self.timeout_action == "abort":
                return [*actions, Action(Action.ABORT, reason=reason)]
            kind = Action.POSTCOPY if self.permit_post_copy else Action.PAUSE
            return [*actions, Action(kind, reason=reason)]
        measured = stats.memory_dirty_rate > 0 or self._probe_dirty > 0
        if stats.memory_iteration < 2 or stats.memory_iteration <= self._iteration \
                or not measured or self.bandwidth(stats) <= 0:
            return actions  # no new dirty-rate measurement since the last decision
        self._iteration = stats.memory_iteration
        m = self.predict(stats)
        numbers = (f"iteration {stats.memory_iteration}: remaining {_mib(m['remaining'])}, "
                   f"dirty {_mib(m['dirty'])}/s, bandwidth {_mib(m['bandwidth'])}/s, "
                   f"ratio {m['rho']:.2f}, throttle {self.throttle_now(stats)}%, "
                   f"needs {m['need_ms']:.0f} ms")
        time_left = self.timeout_s - elapsed_s if self.timeout_s > 0 else math.inf
        if self.permit_post_copy:
            time_left = min(time_left, self.postcopy_tail * elapsed_s)
        want = math.ceil(m["need_ms"] * self.margin)
        if want <= self.downtime_ms:
            if want > self._downtime:
                self._downtime = want
                return [*actions, Action(Action.SET_DOWNTIME, want,
                                         f"adaptive: the remainder fits, switch now; "
                                         f"{numbers}")]
            return [*actions, Action(Action.NOTE, reason=(
                f"adaptive: the remainder fits in {self._downtime} ms; {numbers}"))]
        if m["rho"] < 1 and m["eta_s"] <= time_left:
            if self._downtime < self.downtime_ms:
                # QEMU switches over as soon as the remainder fits what it may take,
                # mid-pass too: no pass the limit would have spared
                self._downtime = self.downtime_ms
                return [*actions, Action(Action.SET_DOWNTIME, self._downtime, (
                    f"adaptive: converging in ~{m['eta_s']:.0f}s, switch as soon as the "
                    f"remainder fits {self.downtime_ms} ms; {numbers}"))]
            return [*actions, Action(Action.NOTE, reason=(
                f"adaptive: converging in ~{m['eta_s']:.0f}s; {numbers}"))]
        if self.permit_post_copy:
            self._done = True
            return [*actions, Action(Action.POSTCOPY, reason=(
                f"adaptive: pre-copy cannot finish within {self.downtime_ms} ms"
                + (f" in {time_left:.0f}s; " if m["rho"] < 1 else "; ") + numbers))]
        if self._downtime < self.downtime_ms:
            self._downtime = self.downtime_ms
            actions.append(Action(Action.SET_DOWNTIME, self._downtime,
                                  f"adaptive: raise downtime to the limit; {numbers}"))
        throttle = self.needed_throttle(m["dirty_free"], m["bandwidth"])
        if throttle > max(self.throttle_now(stats), self._throttle_asked):
            self._throttle_asked = throttle
            actions.append(Action(Action.THROTTLE, throttle, (
                f"adaptive: throttle to bring the ratio to {self.target_ratio:.2f}; "
                f"{numbers}")))
        elif not actions:
            actions.append(Action(Action.NOTE, reason=f"adaptive: not converging yet; "
                                                      f"{numbers}"))
        return actions
