"""The simulated pre-copy job, alone and under the shared monitor and policies."""

from __future__ import annotations

import pytest
from virtsdk_fake.clock import ManualClock
from virtsdk_fake.precopy import SimulatedLiveMigration

from virtsdk.exceptions import NotSupported
from virtsdk.live_migration.monitor import monitor_migration
from virtsdk.live_migration.policies import (
    AutoConverge,
    CompletionTimeout,
    LinearDowntimeSteps,
    PostCopySwitch,
    StallDetection,
    required_flags,
)

MiB = 1024**2


def make_job(clock, mem_mb=1024, bw_mbps=100, dirty_mbps=0.0, wset_mb=None,
             downtime_ms=300, flags=(), disk_mb=0):
    moved = []
    job = SimulatedLiveMigration(
        clock=clock, memory_bytes=mem_mb * MiB, disk_bytes=disk_mb * MiB,
        bandwidth_bps=bw_mbps * MiB, dirty_rate_bps=dirty_mbps * MiB,
        working_set_bytes=(wset_mb if wset_mb is not None else mem_mb) * MiB,
        max_downtime_ms=downtime_ms, flags=set(flags), step_s=0.05,
        switch_over=lambda: moved.append(clock.now()), hit=lambda step: None)
    job.moved = moved
    return job


def run(clock, job, policies, samples=None):
    return monitor_migration(job, policies, samples.append if samples is not None else None,
                             0.5, clock.now, clock.sleep)


def test_an_idle_guest_converges_in_one_pass_and_moves_once():
    clock = ManualClock()
    job = make_job(clock, disk_mb=100)
    samples = []
    final = run(clock, job, [], samples)
    assert final.job_type == "completed" and final.memory_iteration == 1
    assert len(job.moved) == 1
    # disk first, then memory: 100 MiB + (1024 - 30) MiB at 100 MiB/s
    assert final.time_elapsed_ms / 1000 == pytest.approx((100 + 1024 - 30) / 100, abs=0.06)
    assert job.moved[0] >= final.time_elapsed_ms / 1000  # seen at the next sample
    assert final.data_total == (1024 + 100) * MiB and final.data_remaining == 0
    assert final.downtime_ms <= 300
    assert samples[0].disk_remaining == 100 * MiB and samples[0].memory_iteration == 0
    processed = [s.data_processed for s in samples]
    assert processed == sorted(processed)


def test_iterations_grow_with_the_dirty_rate():
    iterations = []
    for dirty in (0, 25, 50, 75):
        clock = ManualClock()
        final = run(clock, make_job(clock, dirty_mbps=dirty), [])
        assert final.job_type == "completed"
        iterations.append(final.memory_iteration)
    assert iterations[0] == 1
    assert iterations == sorted(iterations) and iterations[-1] > iterations[1] > 1


def test_dirtying_faster_than_the_link_never_converges_on_its_own():
    clock = ManualClock()
    job = make_job(clock, dirty_mbps=150)
    for _ in range(20):
        clock.advance(500)
        stats = job.stats()
        assert stats.job_type == "unbounded"
    assert stats.memory_iteration > 5 and stats.data_remaining == 1024 * MiB
    assert job.moved == []


def test_under_nova_defaults_it_is_aborted_at_the_completion_timeout():
    clock = ManualClock()
    job = make_job(clock, dirty_mbps=150)
    policies = [LinearDowntimeSteps(), CompletionTimeout()]
    final = run(clock, job, policies)
    assert final.job_type == "cancelled" and job.moved == []
    assert 800.0 < final.time_elapsed_ms / 1000 <= 800.5  # 800 s per GiB, 1 GiB
    assert job.downtime_history[-1] == 500  # the downtime steps all ran first


def test_post_copy_converges_what_pre_copy_cannot():
    clock = ManualClock()
    policies = [PostCopySwitch(after_iterations=3)]
    job = make_job(clock, dirty_mbps=150, flags=required_flags(policies))
    samples = []
    final = run(clock, job, policies, samples)
    assert final.job_type == "completed" and final.postcopy and len(job.moved) == 1
    switched = next(s for s in samples if s.postcopy)
    assert switched.memory_iteration <= 3
    # the guest moved at the switch, then the rest was pulled
    assert job.moved[0] < final.time_elapsed_ms / 1000


def test_post_copy_needs_its_start_flag():
    job = make_job(ManualClock(), dirty_mbps=150)
    with pytest.raises(NotSupported, match="postcopy flag"):
        job.start_postcopy()


def test_auto_converge_throttles_until_it_converges():
    clock = ManualClock()
    policies = [AutoConverge()]
    job = make_job(clock, dirty_mbps=150, flags=required_flags(policies))
    final = run(clock, job, policies)
    assert final.job_type == "completed" and not final.postcopy
    # 150 MiB/s must be cut below the 100 MiB/s link: throttle above a third
    assert job.throttle > 1 / 3


def test_downtime_steps_let_a_small_working_set_converge():
    # 40 MiB rewritten faster than the link: needs 400 ms of downtime at 100 MiB/s
    clock = ManualClock()
    plain = make_job(clock, dirty_mbps=200, wset_mb=40)
    clock.advance(1000)
    assert plain.stats().job_type == "unbounded"

    clock = ManualClock()
    job = make_job(clock, dirty_mbps=200, wset_mb=40)
    final = run(clock, job, [LinearDowntimeSteps()])
    assert final.job_type == "completed"
    # step 8 of 10 (410 ms) is the first big enough; Nova's schedule puts it at
    # 8 * int(75 * 1 GiB) s
    assert job.max_downtime_ms == 410
    assert 600.0 <= final.time_elapsed_ms / 1000 <= 600.5
    assert 390 <= final.downtime_ms <= 410


def test_stall_detection_aborts_when_remaining_stops_falling():
    clock = ManualClock()
    job = make_job(clock, dirty_mbps=150)
    final = run(clock, job, [StallDetection(window_s=150)])
    assert final.job_type == "cancelled"
    assert 150.0 <= final.time_elapsed_ms / 1000 <= 150.5


def test_pause_stops_dirtying_and_abort_is_final():
    clock = ManualClock()
    job = make_job(clock, dirty_mbps=150)
    clock.advance(30)
    job.stats()
    job.pause()
    assert job.stats().memory_dirty_rate == 0
    clock.advance(30)
    assert job.stats().job_type == "completed"
    job.abort()  # no-op once ended
    assert job.stats().job_type == "completed"
