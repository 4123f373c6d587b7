"""The adaptive convergence controller: its model on synthetic job samples, its
decisions under the shared monitor, and the fake driver's simulated pre-copy."""

from __future__ import annotations

import pytest
from virtsdk_fake.clock import ManualClock
from virtsdk_fake.precopy import SimulatedLiveMigration

from virtsdk.live_migration.base import Action
from virtsdk.live_migration.loader import load_policies
from virtsdk.live_migration.monitor import monitor_migration
from virtsdk.live_migration.policies import AdaptiveConvergence, required_flags
from virtsdk.objects import JobStats

MiB = 1024**2


def sample(remaining_mib: float, iteration: int, dirty_mibps: float, bw_mibps: float,
           throttle: int = 0, postcopy: bool = False) -> JobStats:
    return JobStats(job_type="unbounded", data_total=256 * MiB,
                    data_remaining=int(remaining_mib * MiB), memory_iteration=iteration,
                    memory_dirty_rate=int(dirty_mibps * MiB), memory_bps=int(bw_mibps * MiB),
                    cpu_throttle=throttle, postcopy=postcopy)


def started(**kw) -> AdaptiveConvergence:
    policy = AdaptiveConvergence(**kw)
    policy.start(0.25)
    first = policy.decide(sample(200, 1, 0, 0), 0.0)
    assert first == [Action(Action.SET_DOWNTIME, 50, first[0].reason)]
    return policy


def kinds(actions: list[Action]) -> list[tuple[str, int]]:
    return [(a.kind, a.value) for a in actions]


def test_flags_and_loading_by_name(tmp_path):
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf(args=[])
    [policy] = load_policies(["adaptive"], conf)
    assert isinstance(policy, AdaptiveConvergence)
    # the throttle is a CPU limit set before the start; QEMU's auto-converge is only
    # the safety net, and not needed at all with post-copy
    assert required_flags([policy]) == {"auto_converge"}
    assert AdaptiveConvergence(permit_post_copy=True).migration_flags() == {"postcopy"}


def test_nothing_is_decided_before_a_dirty_rate_was_measured():
    policy = started()
    assert policy.decide(sample(150, 1, 0, 8), 5.0) == []  # first pass: no dirty rate yet


def test_a_converging_guest_gets_the_whole_downtime_limit_and_is_left_alone():
    policy = started()
    # ratio 0.25: converges in about 40 / (8 * 0.75) ~ 7 s; 40 MiB needs 5 s of downtime.
    # QEMU may switch as soon as the remainder fits the limit, mid-pass too
    [act] = policy.decide(sample(40, 2, 2, 8), 20.0)
    assert kinds([act]) == [(Action.SET_DOWNTIME, 500)] and "converging" in act.reason
    assert "ratio 0.25" in act.reason and "remaining 40.0 MiB" in act.reason
    # the same pass again: no new measurement, no new decision
    assert policy.decide(sample(30, 2, 2, 8), 21.0) == []
    # the next pass: still converging, nothing more to do but say so
    [note] = policy.decide(sample(10, 3, 2, 8), 25.0)
    assert note.kind == Action.NOTE and "converging" in note.reason


def test_a_converging_guest_gets_the_downtime_its_remainder_needs():
    policy = started()
    # 2 MiB left at 8 MiB/s needs 250 ms; with the 1.25 margin 313 ms, within 500
    [act] = policy.decide(sample(2, 3, 2, 8), 20.0)
    assert kinds([act]) == [(Action.SET_DOWNTIME, 313)]


def test_downtime_is_raised_within_the_limit_when_that_suffices():
    policy = started()
    # ratio 2 (not converging), but 3 MiB at 8 MiB/s needs 375 ms -> 469 ms
    assert kinds(policy.decide(sample(3, 2, 16, 8), 20.0)) == [(Action.SET_DOWNTIME, 469)]


def test_throttle_is_what_the_model_needs():
    policy = started()
    # 30 MiB at 8 MiB/s needs 3750 ms > 500: raise to the limit, then throttle so that
    # the dirty rate becomes half the bandwidth: 1 - 0.5 * 8 / 16 = 75%
    actions = policy.decide(sample(30, 2, 16, 8), 20.0)
    assert kinds(actions) == [(Action.SET_DOWNTIME, 500), (Action.THROTTLE, 75)]
    assert "dirty 16.0 MiB/s" in actions[1].reason
    # next pass, already throttled 75%: measured 4 MiB/s is 16 unthrottled; converging
    [note] = policy.decide(sample(12, 3, 4, 8, throttle=75), 30.0)
    assert note.kind == Action.NOTE and "converging" in note.reason  # limit already set
    # a guest that got busier: 8 MiB/s at 75% is 32 unthrottled -> 1 - 4/32 = 88%
    assert kinds(policy.decide(sample(30, 4, 8, 8, throttle=75), 40.0)) == [
        (Action.THROTTLE, 88)]


def test_bandwidth_is_the_best_recent_measurement_within_the_cap():
    policy = AdaptiveConvergence()
    policy.migration_params(8 * MiB, 0)
    policy.start(0.25)
    for bps in (6, 9, 2):  # QEMU's 100 ms windows dip at pass boundaries
        policy.decide(sample(100, 1, 0, bps), 1.0)
    assert policy.bandwidth(sample(100, 1, 0, 2)) == 8 * MiB  # 9 measured, capped at 8
    uncapped = AdaptiveConvergence()
    for bps in (6, 9, 2):
        uncapped.decide(sample(100, 1, 0, bps), 1.0)
    assert uncapped.bandwidth(sample(100, 1, 0, 2)) == 9 * MiB


def test_the_start_measurement_is_in_the_timeline():
    policy = AdaptiveConvergence()
    assert policy.migration_params(4 * MiB, 16 * MiB) == {
        "cpu_limit": 88, "cpu_throttle_initial": 5, "cpu_throttle_increment": 5}
    policy.start(0.25)
    note, start = policy.decide(sample(200, 1, 0, 0), 0.0)
    assert note.kind == Action.NOTE and "dirty 16.0 MiB/s" in note.reason
    assert "CPU limit 88%" in note.reason and start.kind == Action.SET_DOWNTIME


def test_a_refused_cpu_limit_is_in_the_timeline_and_out_of_the_model():
    policy = AdaptiveConvergence()
    policy.migration_params(4 * MiB, 16 * MiB)
    policy.params_refused("cpu_limit", "cgroup CPU controller is not mounted")
    policy.start(0.25)
    first, refused, start = policy.decide(sample(200, 1, 0, 0), 0.0)
    assert "CPU limit 88% refused: cgroup CPU controller" in refused.reason
    assert policy.throttle_now(sample(30, 2, 2, 2)) == 0


def test_the_cpu_limit_counts_as_throttle_in_the_model():
    policy = AdaptiveConvergence()
    policy.migration_params(8 * MiB, 16 * MiB)  # 1 - 4/16: 75%
    policy.start(0.25)
    policy.decide(sample(200, 1, 0, 8), 0.0)
    # 4 MiB/s measured under the 75% limit: 16 unthrottled, ratio 0.5: converging
    [note] = policy.decide(sample(30, 2, 4, 8), 20.0)
    assert note.kind == Action.SET_DOWNTIME and "throttle 75%" in note.reason
    assert "converging" in note.reason
    # QEMU's own 20% on top: the guest keeps 80% of 25%, i.e. throttled by 80%
    assert policy.throttle_now(sample(30, 3, 4, 8, throttle=20)) == 80


def test_throttle_is_capped():
    policy = started(max_throttle=80)
    assert kinds(policy.decide(sample(30, 2, 100, 2), 20.0)) == [
        (Action.SET_DOWNTIME, 500), (Action.THROTTLE, 80)]


def test_postcopy_at_once_when_permitted_and_precopy_cannot_finish():
    policy = started(permit_post_copy=True)
    actions = policy.decide(sample(30, 2, 16, 8), 20.0)
    assert kinds(actions) == [(Action.POSTCOPY, 0)]
    assert "cannot finish" in actions[0].reason
    assert policy.decide(sample(30, 3, 16, 8), 30.0) == []  # once


def test_postcopy_not_taken_when_precopy_converges_soon():
    policy = started(permit_post_copy=True)
    # ratio 0.08: about 1.4 s to go, within 20% of the 10 s spent
    assert kinds(policy.decide(sample(30, 2, 2, 24), 10.0)) == [(Action.SET_DOWNTIME, 500)]


def test_postcopy_taken_when_precopy_converges_but_slowly():
    policy = started(permit_post_copy=True)
    # ratio 0.5: 30 / (8 * 0.5) = 7.5 s to go, more than 20% of the 20 s spent
    [act] = policy.decide(sample(30, 2, 4, 8), 20.0)
    assert act.kind == Action.POSTCOPY and "in 4s" in act.reason


def test_no_cpu_limit_when_postcopy_is_permitted():
    policy = AdaptiveConvergence(permit_post_copy=True)
    assert policy.migration_params(2 * MiB, 16 * MiB) == {}


def test_a_prediction_beyond_the_completion_timeout_counts_as_not_converging():
    policy = started(permit_post_copy=True, timeout_per_gib=100)  # 25 s for 0.25 GiB
    # ratio 0.9: 100 MiB / (1 MiB/s * 0.1) = 1000 s > the 5 s left
    assert [a.kind for a in policy.decide(sample(100, 2, 9, 10), 20.0)] == [Action.POSTCOPY]


@pytest.mark.parametrize(("action", "postcopy", "expected"), [
    ("abort", False, Action.ABORT), ("force_complete", True, Action.POSTCOPY),
    ("force_complete", False, Action.PAUSE)])
def test_completion_timeout(action, postcopy, expected):
    policy = started(timeout_per_gib=100, timeout_action=action, permit_post_copy=postcopy)
    assert policy.decide(sample(150, 1, 0, 8), 24.0) == []
    [act] = policy.decide(sample(150, 1, 0, 8), 25.5)
    assert act.kind == expected and "not complete after 26s" in act.reason
    assert policy.decide(sample(150, 1, 0, 8), 30.0) == []


def test_start_parameters_from_a_measured_dirty_rate():
    policy = AdaptiveConvergence()
    assert policy.migration_params(8 * MiB, 0) == {}
    assert policy.migration_params(8 * MiB, 2 * MiB) == {}
    assert policy.migration_params(4 * MiB, 16 * MiB) == {
        "cpu_limit": 88, "cpu_throttle_initial": 5, "cpu_throttle_increment": 5}
    # never more than max_throttle (default 88%): 1 - 1/16 would be 94%
    assert policy.migration_params(2 * MiB, 16 * MiB)["cpu_limit"] == 88
    assert AdaptiveConvergence(max_throttle=99).migration_params(
        2 * MiB, 16 * MiB)["cpu_limit"] == 94


def test_a_limit_that_does_not_bind_is_raised_from_the_rate_measured_under_it():
    """A guest using a third of its CPU keeps its rate under a 67% limit: the rate
    measured under the limit, per share of CPU, sets the next one."""
    policy = AdaptiveConvergence(max_throttle=90)
    assert policy.migration_params(4 * MiB, 6 * MiB)["cpu_limit"] == 67  # 1 - 2/6
    # still 6 MiB/s on a third of the CPU: 18 MiB/s at full speed -> 1 - 2/18
    assert policy.limit_measured(67, 6 * MiB) == 89
    assert policy.limit_measured(89, 1.5 * MiB) == 89  # under the 2 MiB/s target: kept
    policy.start(0.25)
    notes = [a.reason for a in policy.decide(sample(200, 1, 0, 0), 0.0)
             if a.kind == Action.NOTE]
    assert "under the 67% CPU limit: dirty 6.0 MiB/s" in notes[1]
    assert notes[1].endswith("CPU limit 89% for the migration")
    assert notes[2].endswith("kept")
    assert policy.throttle_now(sample(30, 2, 2, 2)) == 89
    post = AdaptiveConvergence(permit_post_copy=True)
    post.migration_params(4 * MiB, 6 * MiB)
    assert post.limit_measured(0, 6 * MiB) == 0


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="initial_downtime_ms"):
        AdaptiveConvergence(downtime_ms=100, initial_downtime_ms=200)
    with pytest.raises(ValueError, match="target_ratio"):
        AdaptiveConvergence(target_ratio=1.5)
    with pytest.raises(ValueError, match="timeout_action"):
        AdaptiveConvergence(timeout_action="explode")


# -- under the monitor, on the fake driver's simulated pre-copy ---------------------------


def make_job(clock, flags, dirty_mbps, wset_mb=1024, bw_mbps=100, params=None):
    params = params or {}
    job = SimulatedLiveMigration(
        clock=clock, memory_bytes=1024 * MiB, disk_bytes=0, bandwidth_bps=bw_mbps * MiB,
        dirty_rate_bps=dirty_mbps * MiB, working_set_bytes=wset_mb * MiB,
        max_downtime_ms=300, flags=set(flags), step_s=0.05,
        switch_over=lambda: None, hit=lambda step: None,
        throttle_initial=params.get("cpu_throttle_initial", 20),
        throttle_increment=params.get("cpu_throttle_increment", 10))
    if params.get("cpu_limit"):
        job.set_cpu_throttle(params["cpu_limit"])
    return job


def run(clock, job, policy):
    samples: list[JobStats] = []
    final = monitor_migration(job, [policy], samples.append, 0.5, clock.now, clock.sleep)
    return final, samples


def test_simulated_guest_dirtying_faster_than_the_link_converges_by_throttling():
    clock = ManualClock()
    policy = AdaptiveConvergence()
    job = make_job(clock, policy.migration_flags(), dirty_mbps=150)
    final, samples = run(clock, job, policy)
    assert final.job_type == "completed" and not final.postcopy
    assert final.downtime_measured and 0 < final.downtime_ms <= 500
    actions = [e["action"] for e in final.timeline]
    assert Action.THROTTLE in actions
    throttle = next(e for e in final.timeline if e["action"] == Action.THROTTLE)
    # nothing measured before the start; QEMU-like auto-converge took its first 20% at
    # the pass: 120 MiB/s measured is 150 unthrottled, and 1 - 50/150 = 67%
    assert throttle["value"] == 67 and throttle["dirty_rate"] == 120 * MiB
    assert throttle["cpu_throttle"] == 20
    assert throttle["outcome"] == "applied" and throttle["iteration"] == 2
    # the timeline reaches the progress callback as it grows
    assert samples[0].timeline == [] and samples[-1].timeline == final.timeline


def test_simulated_guest_with_postcopy_permitted_switches_after_the_first_pass():
    clock = ManualClock()
    policy = AdaptiveConvergence(permit_post_copy=True)
    job = make_job(clock, policy.migration_flags(), dirty_mbps=150)
    final, _ = run(clock, job, policy)
    assert final.job_type == "completed" and final.postcopy
    switch = next(e for e in final.timeline if e["action"] == Action.POSTCOPY)
    assert switch["iteration"] == 2 and "cannot finish" in switch["reason"]


def test_simulated_small_working_set_converges_by_downtime_alone():
    clock = ManualClock()
    policy = AdaptiveConvergence()
    job = make_job(clock, policy.migration_flags(), dirty_mbps=200, wset_mb=30)
    final, _ = run(clock, job, policy)
    assert final.job_type == "completed"
    assert Action.THROTTLE not in [e["action"] for e in final.timeline]
    assert job.max_downtime_ms > 300 and job.max_downtime_ms <= 500


def test_simulated_start_parameters_throttle_from_the_first_step():
    clock = ManualClock()
    policy = AdaptiveConvergence()
    params = policy.migration_params(100 * MiB, 150 * MiB)
    job = make_job(clock, policy.migration_flags(), dirty_mbps=150, params=params)
    final, _ = run(clock, job, policy)
    assert final.job_type == "completed"
    assert params["cpu_limit"] == 67
    assert Action.THROTTLE not in [e["action"] for e in final.timeline]


def test_a_working_set_rewritten_faster_than_a_long_pass_shows_is_not_converging():
    # measured on the lab at 4 MiB/s: after a 28 s first pass libvirt reports 1.2 MiB/s
    # (32 MiB of distinct pages over the pass), but the guest rewrites its ring at
    # 22 MiB/s: the next pass will leave the whole ring again
    policy = AdaptiveConvergence(permit_post_copy=True)
    policy.migration_params(4 * MiB, 22 * MiB)
    policy.start(0.25)
    policy.decide(sample(200, 1, 0, 4), 0.0)
    [act] = policy.decide(sample(34.2, 2, 1.2, 4), 30.0)
    assert act.kind == Action.POSTCOPY and "ratio 1.00" in act.reason
    # without the measurement before the start the model believes libvirt's figure
    naive = started()
    [note] = naive.decide(sample(34.2, 2, 1.2, 4), 30.0)
    assert note.kind == Action.SET_DOWNTIME and "converging" in note.reason
    # ... until the next pass starts with as much left: then it is not converging (and
    # 1.2 MiB/s, the only dirty rate it knows, needs no throttle: the limit is all)
    [note] = naive.decide(sample(33.0, 3, 1.2, 4), 39.0)
    assert note.kind == Action.NOTE and "not converging" in note.reason


def test_the_timeline_and_measured_downtime_reach_the_migration_record(tmp_path):
    """Through the whole stack (API, conductor, computes, fake driver): a guest dirtying
    its memory faster than the link converges under the adaptive controller, and the
    record's details hold its decisions and the measured downtime."""
    from virtsdk_fake.fabric import drop_fabric

    from tests.orchestration.conftest import make_cloud

    cloud = make_cloud(tmp_path, live_migration={"policies": ["adaptive"],
                                                 "bandwidth": 100})
    try:
        api, ctx = cloud.api, cloud.ctx
        inst = api.wait(ctx, api.create_instance(
            ctx, "busy", "tiny-disk", metadata={"fake:dirty_rate_mbps": "150"}).uuid,
            timeout=30)
        mig = api.live_migrate(ctx, inst.uuid)
        moved = api.wait(ctx, inst.uuid, timeout=60)
        assert moved.host != inst.host
        details = api.get_migration_details(ctx, int(mig.id or 0))
        assert details["job_type"] == "completed" and details["downtime_ms"] > 0
        actions = [e["action"] for e in details["timeline"]]
        assert actions[:2] == ["note", "set_downtime"], details["timeline"]
        assert "throttle" in actions or details["cpu_throttle"] > 0
        assert details["data_processed"] > 256 * MiB
    finally:
        cloud.stop()
        drop_fabric(cloud.conf.fake.fabric)
