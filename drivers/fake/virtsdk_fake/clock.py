"""Simulated time for the fake fabric.

Everything in the fake that "takes time" (shutdown timeouts, disk copies, pre-copy
rounds, the live-migration monitor) reads ``clock.now()`` and waits with
``clock.sleep(seconds)`` in *simulated* seconds.  :class:`ScaledClock` maps them to
real time by a factor; :class:`ManualClock` never waits at all, so tests stay fast and
deterministic.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Simulated seconds since an arbitrary origin; never decreases."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` simulated seconds pass."""
        ...


class ScaledClock:
    """Simulated time = real monotonic time / ``time_scale``.

    ``time_scale=0.01`` makes a simulated second last 10 ms.  ``time_scale=0`` is
    allowed: sleeps then return at once and time advances by the slept amount.
    """

    def __init__(self, time_scale: float = 0.01) -> None:
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0, got {time_scale}")
        self.time_scale = time_scale
        self._origin = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            offset = self._offset
        if self.time_scale == 0:
            return offset
        return (time.monotonic() - self._origin) / self.time_scale + offset

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.time_scale == 0:
            with self._lock:
                self._offset += seconds
            return
        time.sleep(seconds * self.time_scale)


class ManualClock:
    """A clock that only moves when told.

    With ``auto_advance`` (the default) ``sleep(s)`` moves time forward by ``s`` and
    returns at once: a whole migration runs in a few milliseconds of real time.
    Without it, ``sleep`` blocks until another thread calls :meth:`advance` far enough.
    """

    def __init__(self, start: float = 0.0, auto_advance: bool = True) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self._cond = threading.Condition()

    def now(self) -> float:
        with self._cond:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._cond:
            if self.auto_advance:
                self._now += seconds
                self._cond.notify_all()
                return
            until = self._now + seconds
            while self._now < until:
                self._cond.wait(timeout=1.0)
