"""Fault injection and stalls at named steps of the fake driver.

Every public driver method is a step named after the method (``spawn``,
``migrate_disk_and_power_off``, ``pre_live_migration`` ...), checked when the method is
entered, before it touches anything.  Internal steps (:data:`INTERNAL_STEPS`) sit at
interesting moments inside a method.  Tests arm a step with :meth:`FaultInjector.inject`
(raise) or :meth:`FaultInjector.stall` (block until released), for one host or all,
for a number of hits or forever.  Unknown step names are refused, so a typo cannot
silently arm nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from virtsdk.driver import OPTIONAL_METHODS
from virtsdk.exceptions import InjectedFault

#: Steps that are not a driver method, and where they sit.
INTERNAL_STEPS: dict[str, str] = {
    "migrate_disk.transfer": "migrate_disk_and_power_off, halfway through the disk bytes",
    "finish_migration.resize": "finish_migration, before growing the received disks",
    "live_migration.start": "live_migration, after the checks, before the job starts",
    "live_migration.iteration": "each new pre-copy memory iteration (job thread)",
    "live_migration.switchover": "just before the guest moves to the destination",
    "live_migration.postcopy": "when the job is asked to switch to post-copy",
}

#: Driver methods that are steps (checked on entry).
METHOD_STEPS: tuple[str, ...] = (
    "init_host", "cleanup_host", "spawn", "destroy", "power_off", "power_on", "get_info",
    "list_instances", "get_available_resource", "plug_vifs", "unplug_vifs", "cleanup",
    "abort_migrate_disk_target", *OPTIONAL_METHODS,
)

KNOWN_STEPS: frozenset[str] = frozenset(METHOD_STEPS) | frozenset(INTERNAL_STEPS)


class StallHandle(threading.Event):
    """Returned by :meth:`FaultInjector.stall`.  ``set()`` releases the stalled
    step(s); :attr:`reached` is set as soon as a thread is held at the step."""

    def __init__(self, step: str, host: str | None) -> None:
        super().__init__()
        self.step = step
        self.host = host
        self.reached = threading.Event()

    def release(self) -> None:
        self.set()

    def wait_reached(self, timeout: float = 10.0) -> bool:
        return self.reached.wait(timeout)


@dataclass
class _Arm:
    step: str
    host: str | None
    times: int | None  # None: every hit
    exc: BaseException | type[BaseException] | None = None
    stall: StallHandle | None = None
    seconds: float | None = None
    hits: int = field(default=0)

    def matches(self, step: str, host: str) -> bool:
        return self.step == step and (self.host is None or self.host == host)

    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultInjector:
    """The fabric's registry of armed faults and stalls, and its log of steps hit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arms: list[_Arm] = []
        #: every step hit, in order, as (host, step)
        self.calls: list[tuple[str, str]] = []

    @staticmethod
    def _check(step: str, times: int | None) -> None:
        if step not in KNOWN_STEPS:
            raise ValueError(f"unknown fault step {step!r}; known steps: "
                             f"{', '.join(sorted(KNOWN_STEPS))}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for every hit")

    def inject(self, step: str, host: str | None = None,
               exc: BaseException | type[BaseException] | None = None,
               times: int | None = 1) -> None:
        """Make ``step`` raise on ``host`` (any host if None) for the next ``times``
        hits (every hit if None).  ``exc`` (an exception or class) defaults to
        InjectedFault naming the step and host."""
        self._check(step, times)
        with self._lock:
            self._arms.append(_Arm(step, host, times, exc=exc))

    def stall(self, step: str, host: str | None = None, times: int | None = 1,
              seconds: float | None = None) -> StallHandle:
        """Make ``step`` block on ``host`` until the returned handle is set (or for
        ``seconds`` real seconds, if given), for ``times`` hits."""
        self._check(step, times)
        handle = StallHandle(step, host)
        with self._lock:
            self._arms.append(_Arm(step, host, times, stall=handle, seconds=seconds))
        return handle

    def clear(self, step: str | None = None) -> None:
        """Disarm everything (or only ``step``); stalled threads are released."""
        with self._lock:
            keep: list[_Arm] = []
            drop: list[_Arm] = []
            for arm in self._arms:
                (drop if step is None or arm.step == step else keep).append(arm)
            self._arms = keep
        for arm in drop:
            if arm.stall is not None:
                arm.stall.set()

    def count(self, step: str, host: str | None = None) -> int:
        """How many times ``step`` was hit (on ``host``, or anywhere)."""
        with self._lock:
            return sum(1 for h, s in self.calls if s == step and (host is None or h == host))

    def hit(self, step: str, host: str) -> None:
        """Called by the driver at ``step`` on ``host``: records it, then blocks and/or
        raises as armed.  Never called with a lock held."""
        if step not in KNOWN_STEPS:
            raise AssertionError(f"driver hit an undeclared step {step!r}")
        stalls: list[_Arm] = []
        fault: _Arm | None = None
        with self._lock:
            self.calls.append((host, step))
            for arm in self._arms:
                if not arm.matches(step, host) or arm.exhausted():
                    continue
                if arm.stall is not None:
                    arm.hits += 1
                    stalls.append(arm)
                elif fault is None:
                    arm.hits += 1
                    fault = arm
            self._arms = [a for a in self._arms if not a.exhausted()
                          or (a.stall is not None and not a.stall.is_set())]
        for arm in stalls:
            assert arm.stall is not None
            arm.stall.reached.set()
            arm.stall.wait(arm.seconds)
        if fault is not None:
            exc = fault.exc
            if exc is None:
                raise InjectedFault(f"injected fault at step {step!r} on host {host!r}")
            if isinstance(exc, type):
                raise exc(f"injected fault at step {step!r} on host {host!r}")
            raise exc
