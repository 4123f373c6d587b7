"""Convergence policies: exact schedules from their formulas, and the loader."""

from __future__ import annotations

import pytest
from oslo_config import cfg

from virtsdk import conf as conf_pkg
from virtsdk import plugins
from virtsdk.exceptions import PluginNotFound
from virtsdk.live_migration import opts as lm_opts
from virtsdk.live_migration.base import Action
from virtsdk.live_migration.loader import (
    configured_policy_names,
    load_configured_policies,
    load_policies,
)
from virtsdk.live_migration.policies import (
    AutoConverge,
    CompletionTimeout,
    ExponentialDowntimeSteps,
    LinearDowntimeSteps,
    PostCopySwitch,
    StallDetection,
    required_flags,
)
from virtsdk.objects import JobStats

GiB = 1024**3


def sample(remaining=GiB, iteration=1, postcopy=False):
    return JobStats(job_type="unbounded", data_total=2 * GiB, data_remaining=remaining,
                    memory_iteration=iteration, postcopy=postcopy)


@pytest.fixture
def conf():
    conf = cfg.ConfigOpts()
    conf(args=[])
    return conf


def test_linear_schedule_is_novas():
    # Nova's documented example: 10 steps, 30 s delay, 3 GB, 400 ms -> a step every 90 s
    policy = LinearDowntimeSteps(downtime_ms=400, steps=10, delay_s_per_gib=30)
    assert policy.schedule(3.0) == [
        (0.0, 40), (90.0, 76), (180.0, 112), (270.0, 148), (360.0, 184), (450.0, 220),
        (540.0, 256), (630.0, 292), (720.0, 328), (810.0, 364), (900.0, 400)]
    # each step waits int(delay * data_gb) seconds: 18 s for a 256 MiB guest at 75 s/GiB
    default = LinearDowntimeSteps(downtime_ms=500, steps=10, delay_s_per_gib=75)
    assert [t for t, _ in default.schedule(0.25)][:3] == [0.0, 18.0, 36.0]
    assert default.schedule(0.25)[-1] == (180.0, 500)


def test_linear_steps_apply_once_each_and_skip_to_the_latest_due():
    policy = LinearDowntimeSteps()
    policy.start(0.2)  # a step every int(75 * 0.2) = 15 s
    assert policy.decide(sample(), 0.0) == [Action(Action.SET_DOWNTIME, 50,
                                                   "linear_downtime step at 0.0s")]
    assert policy.decide(sample(), 14.9) == []
    assert [a.value for a in policy.decide(sample(), 15.0)] == [95]
    assert policy.decide(sample(), 15.5) == []
    assert [a.value for a in policy.decide(sample(), 62.0)] == [230]  # 140, 185 skipped
    assert [a.value for a in policy.decide(sample(), 10_000)] == [500]
    assert policy.decide(sample(), 20_000) == []


def test_exponential_values_are_vdsms():
    policy = ExponentialDowntimeSteps(downtime_ms=500, steps=5, delay_s_per_gib=75)
    assert policy.values() == [101, 104, 120, 189, 500]
    assert policy.schedule(1.0) == [(0.0, 101), (18.75, 104), (37.5, 120), (56.25, 189),
                                    (75.0, 500)]


def test_downtime_policies_from_configuration(conf):
    lm_opts.register_opts(conf)
    conf.set_override("downtime", 400, group="live_migration")
    conf.set_override("downtime_steps", 4, group="live_migration")
    conf.set_override("downtime_delay", 10, group="live_migration")
    linear = LinearDowntimeSteps.from_conf(conf)
    assert linear.values() == [100, 175, 250, 325, 400]
    assert [t for t, _ in linear.schedule(2.0)] == [0.0, 20.0, 40.0, 60.0, 80.0]
    expo = ExponentialDowntimeSteps.from_conf(conf)
    # offset 100, base 300 ** (1/3)
    assert expo.values() == [101, 106, 144, 400]


def test_completion_timeout_aborts_once_after_800s_per_gib():
    policy = CompletionTimeout()
    policy.start(1.5)
    assert policy.timeout_s == 1200
    assert policy.decide(sample(), 1200.0) == []
    actions = policy.decide(sample(), 1200.5)
    assert [a.kind for a in actions] == [Action.ABORT] and "1200" in actions[0].reason
    assert policy.decide(sample(), 1300.0) == []
    assert policy.migration_flags() == set()


@pytest.mark.parametrize(("permit", "kind", "flags"), [
    (False, Action.PAUSE, set()), (True, Action.POSTCOPY, {"postcopy"})])
def test_completion_timeout_force_complete(permit, kind, flags):
    policy = CompletionTimeout(timeout_per_gib=10, action="force_complete",
                               permit_post_copy=permit)
    policy.start(1.0)
    assert [a.kind for a in policy.decide(sample(), 10.5)] == [kind]
    assert policy.migration_flags() == flags


def test_completion_timeout_zero_disables_it():
    policy = CompletionTimeout(timeout_per_gib=0)
    policy.start(4.0)
    assert policy.decide(sample(), 1e9) == []


def test_stall_detection_uses_the_windowed_minimum():
    policy = StallDetection(window_s=100)
    policy.start(2.0)
    assert policy.decide(sample(1000), 0) == []
    assert policy.decide(sample(900), 50) == []  # new minimum at 50 s
    assert policy.decide(sample(950), 100) == []  # worse, but only 50 s since
    assert policy.decide(sample(900), 140) == []  # equal is not progress
    actions = policy.decide(sample(901), 150)
    assert [a.kind for a in actions] == [Action.ABORT]
    assert policy.decide(sample(901), 500) == []  # once


def test_stall_detection_progress_resets_the_window():
    policy = StallDetection(window_s=100, action="postcopy")
    policy.start(1.0)
    for t in range(0, 1000, 50):
        assert policy.decide(sample(10_000 - t), float(t)) == []
    assert policy.migration_flags() == {"postcopy"}
    assert [a.kind for a in policy.decide(sample(10_000), 1100.0)] == [Action.POSTCOPY]


def test_postcopy_switch_after_n_iterations():
    policy = PostCopySwitch(after_iterations=4, min_gain=0.10)
    policy.start(1.0)
    for it, remaining in ((1, 1000), (2, 500), (3, 200)):  # converging well
        assert policy.decide(sample(remaining, it), it * 10.0) == []
    assert [a.kind for a in policy.decide(sample(100, 4), 40.0)] == [Action.POSTCOPY]
    assert policy.decide(sample(50, 5), 50.0) == []
    assert policy.migration_flags() == {"postcopy"}


def test_postcopy_switch_when_an_iteration_gains_less_than_10_percent():
    policy = PostCopySwitch(after_iterations=10)
    policy.start(1.0)
    assert policy.decide(sample(1000, 1), 1.0) == []
    assert policy.decide(sample(1000, 1), 2.0) == []  # same iteration
    assert policy.decide(sample(800, 2), 3.0) == []  # 20% better
    actions = policy.decide(sample(750, 3), 4.0)  # 6% better
    assert [a.kind for a in actions] == [Action.POSTCOPY] and "not converging" in \
        actions[0].reason


def test_postcopy_switch_does_nothing_once_in_post_copy():
    policy = PostCopySwitch(after_iterations=1)
    policy.start(1.0)
    assert policy.decide(sample(10, 7, postcopy=True), 1.0) == []


def test_auto_converge_only_asks_for_its_start_flag():
    policy = AutoConverge()
    policy.start(1.0)
    assert policy.decide(sample(), 1e6) == []
    assert required_flags([policy, LinearDowntimeSteps(), PostCopySwitch()]) == {
        "auto_converge", "postcopy"}


@pytest.mark.parametrize("build", [
    lambda: LinearDowntimeSteps(downtime_ms=0),
    lambda: ExponentialDowntimeSteps(steps=1),
    lambda: CompletionTimeout(action="explode"),
    lambda: StallDetection(window_s=0),
    lambda: StallDetection(action="pause"),
    lambda: PostCopySwitch(after_iterations=0),
])
def test_bad_parameters_are_refused(build):
    with pytest.raises(ValueError):
        build()


def test_loader_builds_policies_from_entry_points(conf):
    assert set(plugins.names(plugins.CONVERGENCE_POLICIES)) >= {
        "linear_downtime", "exponential_downtime", "completion_timeout", "stall_detection",
        "postcopy", "auto_converge"}
    policies = load_policies(["linear_downtime", " completion_timeout", "linear_downtime"],
                             conf)
    assert [type(p) for p in policies] == [LinearDowntimeSteps, CompletionTimeout]
    assert policies[0] is not load_policies(["linear_downtime"], conf)[0]  # per migration


def test_loader_names_what_is_installed_for_an_unknown_policy(conf):
    with pytest.raises(PluginNotFound) as info:
        load_policies(["linear_downtime", "warp_drive"], conf)
    assert "'warp_drive'" in str(info.value) and "stall_detection" in str(info.value)


def test_configured_policies_follow_the_permit_options(conf):
    assert [p.name for p in load_configured_policies(conf)] == [
        "linear_downtime", "completion_timeout"]
    conf.set_override("permit_post_copy", True, group="live_migration")
    conf.set_override("permit_auto_converge", True, group="live_migration")
    conf.set_override("timeout_action", "force_complete", group="live_migration")
    assert configured_policy_names(conf) == ["linear_downtime", "completion_timeout",
                                             "postcopy", "auto_converge"]
    flags = required_flags(load_configured_policies(conf))
    assert flags == {"postcopy", "auto_converge"}
    # adaptive switches to post-copy itself: no iteration-count post-copy policy beside it
    conf.set_override("policies", ["adaptive"], group="live_migration")
    assert configured_policy_names(conf) == ["adaptive", "auto_converge"]


def test_options_have_novas_defaults_and_are_listed_by_virtsdk_conf(conf):
    lm_opts.register_opts(conf)
    lm_opts.register_opts(conf)  # idempotent
    g = conf.live_migration
    assert (g.downtime, g.downtime_steps, g.downtime_delay) == (500, 10, 75)
    assert (g.completion_timeout, g.timeout_action, g.monitor_interval) == (800, "abort", 0.5)
    assert (g.bandwidth, g.permit_post_copy, g.permit_auto_converge) == (0, False, False)
    assert lm_opts in conf_pkg._MODULES
