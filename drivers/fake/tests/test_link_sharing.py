"""``[fake] host_link_mbps``: live migrations leaving (or entering) one host share its
link; a job re-reads its bandwidth at each sample."""

from __future__ import annotations

from virtsdk_fake.clock import ManualClock
from virtsdk_fake.fabric import Capacity, drop_fabric, get_fabric
from virtsdk_fake.precopy import SimulatedLiveMigration

MiB = 1024**2


def job(clock: ManualClock, dest: str = "", bandwidth_of: object = None,
        mem_mb: int = 4096) -> SimulatedLiveMigration:
    return SimulatedLiveMigration(
        clock=clock, memory_bytes=mem_mb * MiB, disk_bytes=0, bandwidth_bps=1024 * MiB,
        dirty_rate_bps=0.0, working_set_bytes=mem_mb * MiB, max_downtime_ms=300,
        flags=set(), step_s=0.05, switch_over=lambda: None, hit=lambda step: None,
        dest=dest, bandwidth_of=bandwidth_of)  # type: ignore[arg-type]


def test_a_job_takes_the_bandwidth_it_is_given_at_each_sample() -> None:
    clock = ManualClock()
    rate = [512.0 * MiB]
    j = job(clock, bandwidth_of=lambda: rate[0])
    j.stats()
    clock.advance(1.0)
    assert j.stats().memory_processed == 512 * MiB
    rate[0] = 1024.0 * MiB
    clock.advance(1.0)
    stats = j.stats()
    assert stats.memory_processed == (512 + 1024) * MiB and stats.memory_bps == 1024 * MiB


def test_running_migrations_share_each_host_link() -> None:
    fabric = get_fabric("test-link-sharing")
    try:
        clock = ManualClock()
        for h in ("a", "b", "c", "d"):
            fabric.join(h, Capacity(8, 8192, 100))
        # not shared by default: every migration gets the stream rate
        assert fabric.live_bandwidth_mbps("a", "c", 1024) == 1024
        fabric.host_link_mbps = 2048
        fabric.host("a").jobs.update({"g1": job(clock, "c"), "g2": job(clock, "d"),
                                      "g3": job(clock, "d")})
        fabric.host("b").jobs["g4"] = job(clock, "d")
        # a: 3 out -> 682.7 each; d: 3 in -> 682.7; c: 1 in; b: 1 out
        assert fabric.live_bandwidth_mbps("a", "c", 1024) == 2048 / 3
        assert fabric.live_bandwidth_mbps("b", "d", 1024) == 2048 / 3
        assert fabric.live_bandwidth_mbps("b", "c", 1024) == 1024  # the stream cap
        fabric.host("a").jobs["g2"].abort()  # ended: no longer shares
        fabric.host("a").jobs["g3"].abort()
        assert fabric.live_bandwidth_mbps("a", "c", 1024) == 1024
        assert fabric.live_bandwidth_mbps("b", "d", 1024) == 1024
    finally:
        drop_fabric("test-link-sharing")
