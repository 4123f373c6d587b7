"""Fault injection and stalls at named steps of the fake driver."""

from __future__ import annotations

import threading

import pytest
from virtsdk_fake.faults import INTERNAL_STEPS, KNOWN_STEPS, METHOD_STEPS

from virtsdk.exceptions import InjectedFault, InsufficientResources
from virtsdk.objects import NetworkInfo
from virtsdk.states import PowerState

from .guest_data import SMALL


def test_every_driver_method_is_a_step():
    from virtsdk_fake.driver import FakeDriver

    for step in METHOD_STEPS:
        assert callable(getattr(FakeDriver, step)), step
    assert set(INTERNAL_STEPS) <= KNOWN_STEPS
    assert "live_migration.switchover" in KNOWN_STEPS


def test_unknown_steps_and_bad_counts_are_refused(fabric):
    with pytest.raises(ValueError, match="unknown fault step 'spwan'"):
        fabric.inject("spwan")
    with pytest.raises(ValueError, match="times"):
        fabric.inject("spawn", times=0)


def test_one_shot_fault_leaves_nothing_behind(h1, fabric, spawn):
    fabric.inject("spawn", host="h1")
    with pytest.raises(InjectedFault, match="'spawn' on host 'h1'"):
        spawn(h1)
    assert h1.list_instances() == []
    assert h1.get_available_resource().memory_mb_used == 0
    spawn(h1)  # the fault fired once
    assert len(h1.list_instances()) == 1


def test_counted_persistent_and_per_host_faults(h1, h2, fabric, spawn):
    inst = spawn(h1)
    fabric.inject("get_info", times=2)
    for _ in range(2):
        with pytest.raises(InjectedFault):
            h1.get_info(inst)
    assert h1.get_info(inst).state == PowerState.RUNNING
    fabric.inject("list_instances", host="h2", times=None)
    assert h1.list_instances() == [inst.name]
    for _ in range(3):
        with pytest.raises(InjectedFault):
            h2.list_instances()
    fabric.faults.clear("list_instances")
    assert h2.list_instances() == []


def test_custom_exceptions(h1, fabric, spawn):
    fabric.inject("spawn", exc=InsufficientResources)
    with pytest.raises(InsufficientResources, match="injected fault at step 'spawn'"):
        spawn(h1)
    boom = RuntimeError("disk on fire")
    fabric.inject("spawn", exc=boom)
    with pytest.raises(RuntimeError) as info:
        spawn(h1)
    assert info.value is boom


def test_steps_are_logged_in_order(h1, fabric, ctx, spawn):
    inst = spawn(h1)
    h1.power_off(inst)
    h1.power_on(ctx, inst, NetworkInfo())
    assert [s for h, s in fabric.faults.calls if h == "h1"] == ["spawn", "power_off",
                                                               "power_on"]
    assert fabric.faults.count("power_on", "h1") == 1
    assert fabric.faults.count("power_on", "h2") == 0


def test_stall_blocks_one_call_without_blocking_the_host(h1, fabric, ctx, spawn):
    inst = spawn(h1)
    held = fabric.stall("power_off", host="h1")
    worker = threading.Thread(target=h1.power_off, args=(inst,))
    worker.start()
    assert held.wait_reached()
    # the stalled call holds no lock: the host still answers
    assert h1.get_info(inst).state == PowerState.RUNNING
    other = spawn(h1)
    assert h1.get_info(other).state == PowerState.RUNNING
    held.release()
    worker.join(10)
    assert not worker.is_alive()
    assert h1.get_info(inst).state == PowerState.SHUTDOWN


def test_clear_releases_stalled_threads(h1, fabric, spawn):
    inst = spawn(h1)
    held = fabric.stall("get_info", times=None)
    worker = threading.Thread(target=h1.get_info, args=(inst,))
    worker.start()
    assert held.wait_reached()
    fabric.faults.clear()
    worker.join(10)
    assert not worker.is_alive() and held.is_set()


def test_timed_stall_ends_by_itself(h1, fabric, spawn):
    inst = spawn(h1)
    held = fabric.stall("get_info", seconds=0.01)
    assert h1.get_info(inst).state == PowerState.RUNNING
    assert held.reached.is_set() and not held.is_set()


def test_stall_and_fault_on_the_same_step(h1, fabric, spawn):
    held = fabric.stall("spawn")
    fabric.inject("spawn")
    errors = []

    def run():
        try:
            spawn(h1, SMALL)
        except InjectedFault as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert held.wait_reached()
    assert errors == []
    held.release()
    worker.join(10)
    assert len(errors) == 1 and h1.list_instances() == []
