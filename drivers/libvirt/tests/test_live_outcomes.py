"""How a live migration ends when it cannot even start, and the job's own rules.

No hypervisor: the source libvirt is an address nobody answers on (a real failure,
no mock), and the job rules are checked with a domain stand-in that only has a
name, so any libvirt call would fail the test.
"""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from oslo_config import cfg
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.driver import LibvirtDriver
from virtsdk_libvirt.host import HostConnectionError
from virtsdk_libvirt.live_migration.checks import cpu_xml, required_disk_bytes
from virtsdk_libvirt.live_migration.job import LibvirtMigrationJob
from virtsdk_libvirt.live_migration.pre import plug_with_retry

from virtsdk.context import get_admin_context
from virtsdk.exceptions import (
    LiveMigrationAborted,
    MigrationError,
    MigrationNotFound,
    NotSupported,
)
from virtsdk.objects import DiskInfo, Flavor, Instance, LiveMigrateData
from virtsdk.plugins import register_opts


class NameOnly:
    """A virDomain stand-in that answers name() and nothing else."""

    def name(self) -> str:
        return "vm1"


@pytest.fixture
def driver(tmp_path):
    conf = cfg.ConfigOpts()
    register_opts(conf, LibvirtDriver)
    conf([], default_config_files=[])
    conf.set_override("connection_uri", "qemu+tcp://127.0.0.1:1/system", "libvirt")
    conf.set_override("connect_retries", 0, "libvirt")
    conf.set_override("instances_path", str(tmp_path), "libvirt")
    return LibvirtDriver(conf, "hosta")


def test_unreachable_source_ends_in_recover_exactly_once(driver):
    inst = Instance(name="vm1", flavor=Flavor("m1", 128, 1, 0))
    post, recover = mock.Mock(), mock.Mock()
    data = LiveMigrateData(target_connect_addr="192.0.2.2")
    with pytest.raises(HostConnectionError):
        driver.live_migration(get_admin_context(), inst, "hostb", post, recover,
                              migrate_data=data)
    post.assert_not_called()
    recover.assert_called_once()
    assert recover.call_args.args[2] == "hostb"


def test_abort_and_force_complete_without_a_running_job(driver):
    inst = Instance(name="vm1", flavor=Flavor("m1", 128, 1, 0))
    with pytest.raises(MigrationNotFound):
        driver.live_migration_abort(inst)
    with pytest.raises(MigrationNotFound):
        driver.live_migration_force_complete(inst)


def test_postcopy_refused_when_not_started_with_postcopy():
    job = LibvirtMigrationJob(NameOnly(), run=lambda: None, postcopy_permitted=False)
    with pytest.raises(NotSupported, match="POSTCOPY"):
        job.start_postcopy()


def test_abort_refused_once_postcopy_started():
    job = LibvirtMigrationJob(NameOnly(), run=lambda: None, postcopy_permitted=True)
    job.postcopy_started = True
    with pytest.raises(LiveMigrationAborted, match="post-copy has started"):
        job.abort()
    assert not job.aborted


def test_job_outcome_from_the_worker():
    ok = LibvirtMigrationJob(NameOnly(), run=lambda: "migrateToURI3",
                             completed_stats=lambda: None)
    ok.start()
    assert ok.wait(10) and ok.succeeded() and ok.result == "migrateToURI3"
    final = ok.stats()
    assert final.job_type == "completed" and final.data_remaining == 0

    def boom() -> None:
        raise RuntimeError("libvirt said no")

    bad = LibvirtMigrationJob(NameOnly(), run=boom)
    bad.start()
    assert bad.wait(10) and not bad.succeeded()
    assert bad.stats().job_type == "failed"
    assert isinstance(bad.failure(), RuntimeError)
    bad.abort()  # after the end: a no-op, no libvirt call
    assert not bad.aborted


def test_plug_with_retry_is_bounded():
    sleeps: list[float] = []
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("not yet")

    assert plug_with_retry(flaky, 5, 0.25, sleeps.append) == 3
    assert sleeps == [0.25, 0.25]
    calls.clear()
    sleeps.clear()

    def never() -> None:
        calls.append(1)
        raise OSError("no bridge")

    with pytest.raises(MigrationError, match="after 4 attempts: no bridge"):
        plug_with_retry(never, 4, 0.5, sleeps.append)
    assert len(calls) == 4 and sleeps == [0.5, 0.5, 0.5]


def test_required_disk_space_with_and_without_overcommit():
    disks = [DiskInfo(path="disk", type="qcow2", virt_disk_size=10 << 30, disk_size=1 << 30),
             DiskInfo(path="disk.local", type="raw", virt_disk_size=2 << 30,
                      disk_size=2 << 30)]
    assert required_disk_bytes(disks, disk_over_commit=True) == 3 << 30
    assert required_disk_bytes(disks, disk_over_commit=False) == 12 << 30


def test_cpu_xml_round_trips_through_the_hardened_parser():
    xml = cpu_xml({"arch": "x86_64", "model": "EPYC", "vendor": "AMD",
                   "topology": {"sockets": 1, "cores": 2, "threads": 1},
                   "features": ["sse4.2", "avx2"]})
    root = xmlutil.parse(xml)
    assert root.findtext("model") == "EPYC"
    assert root.find("topology").get("cores") == "2"
    assert [f.get("name") for f in root.findall("feature")] == ["sse4.2", "avx2"]


def test_second_migration_of_the_same_instance_is_refused(driver):
    inst = Instance(name="vm1", flavor=Flavor("m1", 128, 1, 0))
    release = threading.Event()
    job = LibvirtMigrationJob(NameOnly(), run=release.wait)
    job.start()
    driver._live.source.jobs[inst.uuid] = job  # noqa: SLF001 - as live_migration registers it
    post, recover = mock.Mock(), mock.Mock()
    try:
        with pytest.raises(MigrationError, match="already being live-migrated"):
            driver.live_migration(get_admin_context(), inst, "hostb", post, recover)
    finally:
        release.set()
        job.wait(10)
    post.assert_not_called()
    recover.assert_not_called()
