"""The monitor loop, driven by a scripted job (a MigrationJob that replays samples)."""

from __future__ import annotations

import logging

import pytest

from virtsdk.exceptions import NotSupported
from virtsdk.live_migration.base import Action, ConvergencePolicy
from virtsdk.live_migration.monitor import MonotonicProgress, monitor_migration
from virtsdk.objects import JobStats

GiB = 1024**3


class ScriptedJob:
    """Replays a list of samples (the last one repeats) and records what it is told."""

    def __init__(self, samples: list[JobStats], postcopy_ok: bool = True,
                 fail_on: str = "") -> None:
        self.samples = list(samples)
        self.calls: list[tuple[str, int]] = []
        self.postcopy_ok = postcopy_ok
        self.fail_on = fail_on

    def stats(self) -> JobStats:
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]

    def _record(self, name: str, value: int = 0) -> None:
        self.calls.append((name, value))
        if name == self.fail_on:
            raise RuntimeError(f"{name} failed")

    def set_max_downtime(self, downtime_ms: int) -> None:
        self._record("set_max_downtime", downtime_ms)

    def abort(self) -> None:
        self._record("abort")

    def start_postcopy(self) -> None:
        if not self.postcopy_ok:
            raise NotSupported("scripted", "post-copy")
        self._record("start_postcopy")

    def pause(self) -> None:
        self._record("pause")

    def set_cpu_throttle(self, percent: int) -> None:
        if not self.postcopy_ok:
            raise NotSupported("scripted", "CPU throttle")
        self._record("set_cpu_throttle", percent)


class Scripted(ConvergencePolicy):
    """Returns the given actions at the given sample numbers; records what it saw."""

    name = "scripted"

    def __init__(self, plan: dict[int, list[Action]]) -> None:
        self.plan = plan
        self.seen: list[tuple[int, float]] = []
        self.data_gb = -1.0

    def decide(self, stats: JobStats, elapsed_s: float) -> list[Action]:
        self.seen.append((stats.data_remaining, elapsed_s))
        return self.plan.get(len(self.seen), [])


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def running(remaining: int, total: int = 100, iteration: int = 1) -> JobStats:
    return JobStats(job_type="unbounded", data_total=total, data_remaining=remaining,
                    memory_iteration=iteration)


def done(job_type: str = "completed", total: int = 100) -> JobStats:
    return JobStats(job_type=job_type, data_total=total, data_remaining=0)


def run(job, policies=(), interval=0.5, data_gb=None):
    t = FakeTime()
    reported: list[JobStats] = []
    final = monitor_migration(job, list(policies), reported.append, interval, t.clock,
                              t.sleep, data_gb)
    return final, reported, t


def test_progress_never_goes_backwards():
    remaining = [100, 50, 70, 30, 40, 0]
    job = ScriptedJob([running(r) for r in remaining[:-1]] + [done()])
    final, reported, t = run(job)
    assert [s.progress for s in reported] == [0.0, 50.0, 50.0, 70.0, 70.0, 100.0]
    assert [s.data_remaining for s in reported] == [100, 50, 50, 30, 30, 0]
    assert final.job_type == "completed" and final is reported[-1]
    assert t.sleeps == [0.5] * 5


def test_progress_clamp_survives_a_growing_total():
    mono = MonotonicProgress()
    assert mono.apply(running(25, total=100)).progress == 75.0
    grown = mono.apply(running(60, total=200))  # raw 70%
    assert grown.progress == 75.0 and grown.data_total == 200


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
def test_returns_the_final_sample_of_any_ending(end):
    job = ScriptedJob([running(80), done(end)])
    final, reported, _ = run(job)
    assert final.job_type == end and len(reported) == 2


def test_policies_start_with_data_gb_and_see_elapsed_time():
    policy = Scripted({})
    job = ScriptedJob([running(90, total=3 * GiB), running(80, total=3 * GiB), done()])
    run(job, [policy], interval=2.0)
    assert policy.data_gb == 3.0
    assert policy.seen == [(90, 0.0), (80, 2.0)]
    given = Scripted({})
    run(ScriptedJob([running(1), done()]), [given], data_gb=1.25)
    assert given.data_gb == 1.25


def test_actions_reach_the_job():
    policy = Scripted({1: [Action(Action.SET_DOWNTIME, 50)],
                       2: [Action(Action.SET_DOWNTIME, 95), Action(Action.PAUSE)],
                       3: [Action(Action.PAUSE), Action(Action.POSTCOPY)],
                       4: [Action(Action.POSTCOPY)]})
    job = ScriptedJob([running(90)] * 5 + [done()])
    run(job, [policy])
    assert job.calls == [("set_max_downtime", 50), ("set_max_downtime", 95), ("pause", 0),
                         ("start_postcopy", 0)]


def test_abort_is_applied_once_and_silences_later_actions():
    first = Scripted({2: [Action(Action.ABORT, reason="too slow")],
                      3: [Action(Action.ABORT)]})
    second = Scripted({2: [Action(Action.SET_DOWNTIME, 300)],
                       3: [Action(Action.POSTCOPY)]})
    job = ScriptedJob([running(90)] * 3 + [done("cancelled")])
    final, _, _ = run(job, [first, second])
    assert job.calls == [("abort", 0)] and final.job_type == "cancelled"


def test_refused_post_copy_falls_back_to_pausing():
    job = ScriptedJob([running(90), running(90), done()], postcopy_ok=False)
    run(job, [Scripted({1: [Action(Action.POSTCOPY)]})])
    assert job.calls == [("pause", 0)]


def test_a_failing_action_is_logged_and_monitoring_goes_on(caplog):
    job = ScriptedJob([running(90), running(50), done()], fail_on="set_max_downtime")
    with caplog.at_level(logging.ERROR, logger="virtsdk.live_migration.monitor"):
        final, reported, _ = run(job, [Scripted({1: [Action(Action.SET_DOWNTIME, 5)]})])
    assert final.job_type == "completed" and len(reported) == 3
    assert "set_downtime" in caplog.text


def test_a_failing_sample_propagates():
    class Broken(ScriptedJob):
        def stats(self) -> JobStats:
            raise OSError("connection to the hypervisor lost")

    with pytest.raises(OSError, match="hypervisor"):
        run(Broken([done()]))


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval"):
        run(ScriptedJob([done()]), interval=0)


def test_samples_carry_the_max_downtime_applied_so_far():
    policy = Scripted({1: [Action(Action.SET_DOWNTIME, 50)],
                       3: [Action(Action.SET_DOWNTIME, 95), Action(Action.SET_DOWNTIME, 140)]})
    job = ScriptedJob([running(90)] * 4 + [done()])
    t = FakeTime()
    reported: list[JobStats] = []
    steps: list[int] = []
    final = monitor_migration(job, [policy], reported.append, 0.5, t.clock, t.sleep,
                              downtime_steps=steps)
    # a step applies after a sample: the next sample shows it; 95 and 140 were applied
    # between the same two samples, so only 140 is ever seen on a sample
    assert [s.max_downtime_ms for s in reported] == [0, 50, 50, 140, 140]
    assert final is reported[-1] and final.max_downtime_ms == 140
    assert steps == [50, 95, 140]
    assert [v for name, v in job.calls if name == "set_max_downtime"] == steps


def test_a_refused_downtime_is_not_a_step_and_the_job_value_shows_until_one_applies():
    job = ScriptedJob([JobStats(job_type="unbounded", data_total=100, data_remaining=90,
                                max_downtime_ms=300)] * 3 + [done()],
                      fail_on="set_max_downtime")
    steps: list[int] = []
    t = FakeTime()
    reported: list[JobStats] = []
    monitor_migration(job, [Scripted({1: [Action(Action.SET_DOWNTIME, 50)]})],
                      reported.append, 0.5, t.clock, t.sleep, downtime_steps=steps)
    assert steps == [] and job.calls == [("set_max_downtime", 50)]
    assert [s.max_downtime_ms for s in reported] == [300, 300, 300, 0]


def test_policies_decide_on_raw_numbers_while_progress_stays_monotonic():
    # libvirt's remaining data goes up again in a later pass: the progress bar keeps
    # its best value, the policies see what libvirt said
    policy = Scripted({})
    job = ScriptedJob([running(r) for r in (60, 30, 34, 10)] + [done()])
    _, reported, _ = run(job, [policy])
    assert [s.data_remaining for s in reported[:4]] == [60, 30, 30, 10]
    assert [r for r, _t in policy.seen] == [60, 30, 34, 10]


def test_every_decision_lands_in_the_timeline_with_its_numbers(caplog):
    policy = Scripted({1: [Action(Action.SET_DOWNTIME, 50, "start")],
                       2: [Action(Action.THROTTLE, 60, "dirty 16 MiB/s")],
                       3: [Action(Action.NOTE, reason="converging in ~5s")]})
    samples = [JobStats(job_type="unbounded", data_total=100, data_remaining=r,
                        memory_iteration=i, memory_dirty_rate=7, memory_bps=9)
               for r, i in ((90, 1), (80, 2), (70, 3))]
    timeline: list[dict] = []
    t = FakeTime()
    reported: list[JobStats] = []
    with caplog.at_level(logging.INFO, logger="virtsdk.live_migration.monitor"):
        final = monitor_migration(ScriptedJob([*samples, done()]), [policy],
                                  reported.append, 0.5, t.clock, t.sleep,
                                  timeline=timeline)
    assert [(e["action"], e["value"], e["t_s"], e["remaining"], e["iteration"])
            for e in timeline] == [("set_downtime", 50, 0.0, 90, 1),
                                   ("throttle", 60, 0.5, 80, 2),
                                   ("note", 0, 1.0, 70, 3)]
    assert timeline[1]["dirty_rate"] == 7 and timeline[1]["bandwidth"] == 9
    assert timeline[1]["reason"] == "dirty 16 MiB/s" and timeline[1]["outcome"] == "applied"
    assert [len(s.timeline) for s in reported] == [0, 1, 2, 3]
    assert final.timeline == timeline
    assert final.cpu_throttle == 60  # the job reports none: the applied one is shown
    assert "CPU throttle -> 60%" in caplog.text and "converging in ~5s" in caplog.text


def test_a_refused_throttle_is_recorded_as_refused():
    job = ScriptedJob([running(90), running(80), done()], postcopy_ok=False)
    final, _, _ = run(job, [Scripted({1: [Action(Action.THROTTLE, 60)]})])
    assert job.calls == []
    [entry] = final.timeline
    assert entry["outcome"].startswith("refused") and final.cpu_throttle == 0


def test_a_cancelled_job_keeps_its_last_real_sample():
    # after an abort the hypervisor reports an empty job: the record keeps how far it got
    last = JobStats(job_type="unbounded", data_total=100, data_remaining=40,
                    data_processed=300, memory_iteration=7, time_elapsed_ms=91_000)
    job = ScriptedJob([running(90), last, JobStats(job_type="cancelled")])
    final, _, _ = run(job)
    assert final.job_type == "cancelled" and final.memory_iteration == 7
    assert final.data_processed == 300 and final.time_elapsed_ms == 91_000
    assert not final.downtime_measured
