"""The clean-shutdown loop: resend every retry_interval, force off at the deadline.

Driven by a simulated clock (no sleeping, no timing assertions)."""

from __future__ import annotations

import libvirt
from virtsdk_libvirt.guest import map_state, shutdown_then_force

from virtsdk.states import PowerState


class SimGuest:
    """A guest that stops ``stops_after`` seconds after the first shutdown request
    (never if None), on a simulated clock."""

    def __init__(self, stops_after: float | None) -> None:
        self.now = 0.0
        self.requests: list[float] = []
        self.stops_after = stops_after
        self.forced = False

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.01)

    def request(self) -> None:
        self.requests.append(self.now)

    def is_off(self) -> bool:
        if self.forced:
            return True
        return bool(self.requests and self.stops_after is not None
                    and self.now - self.requests[0] >= self.stops_after)

    def force(self) -> None:
        self.forced = True

    def run(self, timeout: float, retry: float) -> bool:
        return shutdown_then_force(self.request, self.is_off, self.force, timeout, retry,
                                   poll=0.5, clock=self.clock, sleep=self.sleep)


def test_cooperative_guest_stops_cleanly() -> None:
    g = SimGuest(stops_after=2.0)
    assert g.run(timeout=60, retry=10) is True
    assert not g.forced
    assert len(g.requests) == 1


def test_requests_are_resent_every_retry_interval_then_forced() -> None:
    g = SimGuest(stops_after=None)
    assert g.run(timeout=10, retry=3) is False
    assert g.forced
    assert len(g.requests) == 4  # at 0, 3, 6, 9
    gaps = [b - a for a, b in zip(g.requests, g.requests[1:], strict=False)]
    assert all(3.0 <= gap < 3.6 for gap in gaps)
    assert g.now >= 10


def test_slow_guest_answers_a_later_request() -> None:
    g = SimGuest(stops_after=7.0)
    assert g.run(timeout=20, retry=5) is True
    assert len(g.requests) == 2


def test_zero_timeout_forces_at_once() -> None:
    g = SimGuest(stops_after=0.0)
    assert g.run(timeout=0, retry=5) is False
    assert g.forced and g.requests == [] and g.now == 0.0


def test_already_off_guest_is_left_alone() -> None:
    g = SimGuest(stops_after=None)
    g.forced = True  # off before we start
    assert g.run(timeout=5, retry=1) is True
    assert g.requests == []


def test_state_mapping() -> None:
    assert map_state(libvirt.VIR_DOMAIN_RUNNING) is PowerState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_BLOCKED) is PowerState.RUNNING
    assert map_state(libvirt.VIR_DOMAIN_PAUSED) is PowerState.PAUSED
    assert map_state(libvirt.VIR_DOMAIN_SHUTOFF) is PowerState.SHUTDOWN
    assert map_state(libvirt.VIR_DOMAIN_CRASHED) is PowerState.CRASHED
    assert map_state(libvirt.VIR_DOMAIN_PMSUSPENDED) is PowerState.SUSPENDED
    assert map_state(12345) is PowerState.NOSTATE
