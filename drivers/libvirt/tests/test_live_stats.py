"""libvirt job statistics as measurements: units, estimates kept apart from
measurements, a cancelled job's last real sample, the throttle that cannot change
mid-flight.  (The lab tests measure the real thing; these cover the translation and
the paths a real libvirt cannot be made to take on demand.)"""

from __future__ import annotations

import libvirt
import pytest
from virtsdk_libvirt.live_migration import migrate
from virtsdk_libvirt.live_migration.job import LibvirtMigrationJob, job_stats_from_libvirt

from virtsdk.exceptions import Invalid, NotSupported

MiB = 1024**2


def raw(job_type: int, **fields: int) -> dict[str, int]:
    return {"type": job_type, **fields}


def test_dirty_rate_pages_become_bytes_and_running_downtime_is_an_estimate():
    running = job_stats_from_libvirt(raw(
        libvirt.VIR_DOMAIN_JOB_UNBOUNDED, memory_dirty_rate=1000, memory_page_size=4096,
        downtime=17040, memory_iteration=3, auto_converge_throttle=40))
    assert running.memory_dirty_rate == 4096 * 1000
    assert running.downtime_ms == 0 and not running.downtime_measured
    assert running.expected_downtime_ms == 17040 and running.cpu_throttle == 40
    done = job_stats_from_libvirt(raw(libvirt.VIR_DOMAIN_JOB_COMPLETED, downtime=612,
                                      data_processed=300 * MiB))
    assert done.downtime_ms == 612 and done.downtime_measured
    assert done.expected_downtime_ms == 0 and done.data_processed == 300 * MiB
    nothing = job_stats_from_libvirt(raw(libvirt.VIR_DOMAIN_JOB_COMPLETED))
    assert not nothing.downtime_measured


class ScriptedDomain:
    """A virDomain stand-in replaying jobStats() answers."""

    def __init__(self, answers: list[dict[str, int]]) -> None:
        self.answers = answers

    def name(self) -> str:
        return "vm1"

    def jobStats(self, flags: int = 0) -> dict[str, int]:  # noqa: N802 - libvirt's name
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_an_empty_job_after_abort_does_not_replace_the_last_sample():
    dom = ScriptedDomain([
        raw(libvirt.VIR_DOMAIN_JOB_UNBOUNDED, data_total=256 * MiB,
            data_processed=700 * MiB, memory_iteration=20, time_elapsed=91_000),
        raw(libvirt.VIR_DOMAIN_JOB_NONE)])
    job = LibvirtMigrationJob(dom, run=lambda: None)  # type: ignore[arg-type]
    first = job.stats()
    assert job.stats() is first  # the empty job is not a sample
    job.aborted = True
    job.error = RuntimeError("operation aborted")
    job._done.set()  # noqa: SLF001 - the worker ended
    final = job.stats()
    assert final.job_type == "cancelled" and final.memory_iteration == 20
    assert final.data_processed == 700 * MiB and final.time_elapsed_ms == 91_000


def test_without_completed_statistics_no_downtime_is_reported():
    dom = ScriptedDomain([raw(libvirt.VIR_DOMAIN_JOB_UNBOUNDED, data_total=100,
                              data_remaining=10, downtime=4296)])
    job = LibvirtMigrationJob(dom, run=lambda: None,  # type: ignore[arg-type]
                              completed_stats=lambda: None)
    job.stats()
    job._done.set()  # noqa: SLF001 - the worker ended well
    final = job.stats()
    assert final.job_type == "completed" and final.downtime_ms == 0
    assert not final.downtime_measured and final.data_remaining == 0


def test_completed_statistics_are_the_final_sample():
    dom = ScriptedDomain([raw(libvirt.VIR_DOMAIN_JOB_UNBOUNDED, data_total=100)])
    event = {"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "downtime": 650,
             "data_processed": 280 * MiB, "time_elapsed": 53_000}
    job = LibvirtMigrationJob(dom, run=lambda: None,  # type: ignore[arg-type]
                              completed_stats=lambda: event, postcopy_permitted=True)
    job.postcopy_started = True
    job._done.set()  # noqa: SLF001
    final = job.stats()
    assert final.downtime_measured and final.downtime_ms == 650 and final.postcopy
    assert final.data_processed == 280 * MiB and final.time_elapsed_ms == 53_000


def test_the_throttle_of_a_running_job_cannot_change():
    job = LibvirtMigrationJob(ScriptedDomain([{}]), run=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(NotSupported, match="when the migration starts"):
        job.set_cpu_throttle(80)


@pytest.mark.parametrize(("percent", "period", "quota"), [
    (50, 10_000, 5_000),    # 5 ms of every 10 ms
    (84, 10_000, 1_600),
    (90, 10_000, 1_000),    # libvirt's 1 ms minimum quota
    (95, 20_000, 1_000),    # longer period, never a quota under 1 ms
    (99, 100_000, 1_000),
    (150, 100_000, 1_000),  # clamped to 99
])
def test_cpu_limit_as_vcpu_bandwidth(percent, period, quota):
    from virtsdk_libvirt.live_migration.source import cpu_limit_bandwidth

    assert cpu_limit_bandwidth(percent) == (period, quota)


def test_policy_start_parameters():
    params = migrate.migration_params(
        dest_xml=None, data_uri="tcp://h", bandwidth_mib=8, disks=None,
        parallel_connections=0,
        policy_params={"cpu_throttle_initial": 75, "cpu_throttle_increment": 12})
    assert params == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://h",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 8,
        libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL: 75,
        libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT: 12}
    with pytest.raises(Invalid, match="'turbo'"):
        migrate.migration_params(dest_xml=None, data_uri="tcp://h", bandwidth_mib=0,
                                 disks=None, parallel_connections=0,
                                 policy_params={"turbo": 1})


def test_postcopy_bandwidth_is_unlimited_unless_configured():
    def params(cap: int, postcopy: int) -> dict[str, object]:
        return migrate.migration_params(dest_xml=None, data_uri="tcp://h",
                                        bandwidth_mib=cap, disks=None,
                                        parallel_connections=0,
                                        postcopy_bandwidth_mib=postcopy)

    assert libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY not in params(8, 0)
    assert params(8, 8)[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] == 8
    assert params(0, 16)[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] == 16
