"""Simulated clocks: scaled real time and a manual clock."""

from __future__ import annotations

import threading

import pytest
from virtsdk_fake.clock import ManualClock, ScaledClock
from virtsdk_fake.fabric import drop_fabric, get_fabric


def test_scaled_clock_runs_faster_than_real_time():
    clock = ScaledClock(time_scale=0.001)
    start = clock.now()
    clock.sleep(2.0)  # two simulated seconds: about 2 ms of real time
    assert clock.now() - start >= 2.0


def test_zero_time_scale_never_waits_and_still_advances():
    clock = ScaledClock(time_scale=0)
    clock.sleep(3600)
    assert clock.now() == 3600
    with pytest.raises(ValueError):
        ScaledClock(time_scale=-1)


def test_manual_clock_auto_advances_on_sleep():
    clock = ManualClock(start=10)
    clock.sleep(5)
    assert clock.now() == 15
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_manual_clock_without_auto_advance_waits_for_the_test():
    clock = ManualClock(auto_advance=False)
    woke = threading.Event()
    sleeper = threading.Thread(target=lambda: (clock.sleep(30), woke.set()))
    sleeper.start()
    clock.advance(10)
    assert not woke.wait(0.05)
    clock.advance(20)
    sleeper.join(10)
    assert woke.is_set() and clock.now() == 30


def test_a_fabric_built_from_configuration_uses_scaled_time():
    fabric = get_fabric("clock-test-fabric", time_scale=0.5)
    try:
        assert isinstance(fabric.clock, ScaledClock) and fabric.clock.time_scale == 0.5
        assert get_fabric("clock-test-fabric", time_scale=0.1) is fabric
    finally:
        drop_fabric("clock-test-fabric")
