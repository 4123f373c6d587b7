"""Live migration of real guests between the two lab hosts.

Each test drives the whole sequence the compute manager runs (checks on both hosts,
``pre_live_migration`` on the destination, ``live_migration`` on the source ending in
post or recover, then the post / rollback calls on both hosts), see :func:`migrate`.

Guest boots are the expensive part, so the module boots three guests once, in
parallel, and walks them through the tests in order:

* ``quiet`` (diskless, VNC on its host's own address): fails without the XML rewrite,
  moves with it (heartbeat and memory checksum preserved), survives an abort and a
  monitor failure;
* ``disky`` (a 1 GiB qcow2 root disk): block migration chosen automatically; failing
  pre_live_migration rolled back;
* ``dirty`` (rewrites non-zero memory at ~4 MiB/s): does not converge under a
  4 MiB/s cap with the default policies, gets the adaptive controller's CPU limit for
  a migration that is aborted (lifted afterwards), then completes under the post-copy policy,
  then comes back with a forced completion (the guest is paused, then resumed on the
  destination).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
from oslo_concurrency import processutils
from virtsdk_lab.guest import ConsoleLog
from virtsdk_libvirt.disk import info as disk_info
from virtsdk_libvirt.driver import LibvirtDriver
from virtsdk_libvirt.live_migration.pre import INCOMING_MARKER
from virtsdk_libvirt.migrate_data import LibvirtLiveMigrateData

from tests.audit_check import assert_holds
from virtsdk.context import get_admin_context
from virtsdk.driver import HELD_INSTANCE, HELD_LEFTOVER
from virtsdk.exceptions import (
    DestinationDiskExists,
    LiveMigrationAborted,
    MigrationError,
    MigrationPreCheckError,
)
from virtsdk.live_migration import opts as lm_opts
from virtsdk.objects import (
    VIF,
    Flavor,
    ImageMeta,
    Instance,
    JobStats,
    NetworkInfo,
)
from virtsdk.testing.sequences import LiveOutcome, live_migrate

from .libvirt_lab import clean_lab_host, make_driver

pytestmark = pytest.mark.lab

CTX = get_admin_context()
NET = NetworkInfo()
BOOT_TIMEOUT = 120.0
BW_CAP_MIB = 4
DIRTY_KBPS = 16384  # asks for more than the guest manages under emulation (~4 MiB/s)


def migrate(src: LibvirtDriver, dst: LibvirtDriver, inst: Instance, *,
            net: NetworkInfo = NET, on_sample: Callable[[JobStats], None] | None = None,
            dest_name: str | None = None) -> LiveOutcome:
    """The manager's live-migration sequence between two lab drivers (the kit's)."""
    return live_migrate(src, dst, CTX, inst, network_info=net, on_sample=on_sample,
                        dest=dest_name)


@contextlib.contextmanager
def overrides(driver: LibvirtDriver, **values: Any) -> Iterator[None]:
    """Set options of ``driver`` for a block: ``name`` is in [libvirt],
    ``group__name`` in another group."""
    lm_opts.register_opts(driver.conf)
    keys = []
    for key, value in values.items():
        group, _, name = key.rpartition("__")
        group = group or "libvirt"
        driver.conf.set_override(name, value, group)
        keys.append((name, group))
    try:
        yield
    finally:
        for name, group in keys:
            driver.conf.clear_override(name, group)


def runs_on(driver: LibvirtDriver, inst: Instance) -> bool:
    dom = driver._find(inst)  # noqa: SLF001
    return dom is not None and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def console(driver: LibvirtDriver, inst: Instance) -> ConsoleLog:
    return ConsoleLog(driver._paths.console_log(inst))  # noqa: SLF001


def left_nothing(driver: LibvirtDriver, inst: Instance) -> bool:
    """No domain and no instance directory of ``inst`` on ``driver``'s host, and
    nothing of it in what the driver lists for the audit."""
    assert_holds(driver, {}, [inst.uuid])
    return (driver._find(inst) is None  # noqa: SLF001
            and not driver._paths.instance_dir(inst).exists())  # noqa: SLF001


def only_guest_on(driver: LibvirtDriver, inst: Instance) -> bool:
    """``inst`` runs on ``driver``'s host, and the audit listing there shows the
    guest only (no kept copy, no incoming or left-over files)."""
    assert_holds(driver, {inst.uuid: [HELD_INSTANCE]})
    return runs_on(driver, inst)


def still_beating(driver: LibvirtDriver, inst: Instance, boot_id: str) -> int:
    """Wait for a new heartbeat of the same boot on ``driver``'s host; its seq."""
    log = console(driver, inst)
    last = max((b.seq for b in log.heartbeats() if b.boot_id == boot_id), default=0)
    return log.wait_for_heartbeat(30, boot_id=boot_id, after_seq=last).seq


@pytest.fixture(scope="module")
def hosts(lab: Any) -> Iterator[tuple[Any, Any]]:
    a, b = lab.hosts[0], lab.hosts[1]
    for h in (a, b):
        clean_lab_host(h)
    yield a, b
    for h in (a, b):
        clean_lab_host(h)


@pytest.fixture(scope="module")
def drivers(hosts: tuple[Any, Any]) -> Iterator[tuple[LibvirtDriver, LibvirtDriver]]:
    a, b = (make_driver(h) for h in hosts)
    yield a, b
    for d in (a, b):
        d.cleanup_host(d.host)


@pytest.fixture(scope="module")
def guests(drivers: tuple[LibvirtDriver, LibvirtDriver], guest_image: Any,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Instance]:
    """Three guests spawned on host A (booting in parallel; tests wait for them).

    ``disky`` boots from an image with a (64 MiB, empty) base disk, so its root disk
    is a qcow2 overlay whose backing file lives in each host's image cache.
    """
    a, _b = drivers
    base = tmp_path_factory.mktemp("live-images") / "base.raw"
    processutils.execute("qemu-img", "create", "-q", "-f", "raw", str(base), "64M")

    def image(name: str, location: str = "", **kw: Any) -> ImageMeta:
        return ImageMeta(id=f"live-{name}", location=location, disk_format="raw",
                         properties={
                             "kernel": str(guest_image.kernel),
                             "initrd": str(guest_image.initrd),
                             "cmdline": guest_image.cmdline(memcheck_mib=4, **kw)})

    specs = {
        "quiet": (Flavor("live-quiet", 128, 1, 0), image("quiet")),
        "disky": (Flavor("live-disky", 128, 1, 1), image("disky", str(base))),
        "dirty": (Flavor("live-dirty", 96, 1, 0), image("dirty", dirty_kbps=DIRTY_KBPS,
                                                         dirty_mib=16)),
    }
    out = {}
    for name, (flavor, img) in specs.items():
        inst = Instance(name=f"live-{name}", flavor=flavor, image=img)
        a.spawn(CTX, inst, img, NET)
        out[name] = inst
    return out


def booted(driver: LibvirtDriver, inst: Instance) -> str:
    """The boot id once the guest on ``driver``'s host heartbeats."""
    return console(driver, inst).wait_for_heartbeat(BOOT_TIMEOUT).boot_id


# -- the quiet guest ---------------------------------------------------------------------


def test_vnc_on_source_address_fails_without_rewrite(hosts, drivers, guests):
    a, b = drivers
    inst = guests["quiet"]
    boot = booted(a, inst)
    legacy = make_driver(hosts[0], live_migration_rewrite_xml=False)
    try:
        out = migrate(legacy, b, inst)
    finally:
        legacy.cleanup_host(legacy.host)
    assert out.calls == ["recover"]
    assert isinstance(out.error, libvirt.libvirtError)
    bind_error = "Failed to bind socket: Cannot assign requested address"
    assert bind_error in str(out.error)
    qemu_log = Path(hosts[1].log_dir) / "qemu" / f"{inst.name}.log"
    assert bind_error in qemu_log.read_text()
    assert hosts[0].address in qemu_log.read_text()  # B's QEMU was told A's address
    assert out.final.job_type == "failed"
    assert runs_on(a, inst) and left_nothing(b, inst)
    still_beating(a, inst, boot)


def test_live_migration_with_rewrite_keeps_guest_and_memory(hosts, drivers, guests):
    a, b = drivers
    inst = guests["quiet"]
    boot = booted(a, inst)
    memcheck = console(a, inst).memchecks()[0].sha256
    seq_before = still_beating(a, inst, boot)
    out = migrate(a, b, inst)
    assert out.error is None and out.calls == ["post"]
    assert out.final.job_type == "completed"
    assert out.final.downtime_measured and out.final.downtime_ms > 0
    assert isinstance(out.data, LibvirtLiveMigrateData)
    assert out.data.downtime_ms == out.final.downtime_ms
    assert out.data.data_processed == out.final.data_processed > 0
    assert [s.progress for s in out.samples] == sorted(s.progress for s in out.samples)
    assert only_guest_on(b, inst) and left_nothing(a, inst)
    dom = b._find(inst)  # noqa: SLF001
    assert dom.isPersistent()
    xml = dom.XMLDesc(0)
    assert f"listen='{hosts[1].address}'" in xml or f'listen="{hosts[1].address}"' in xml
    assert str(hosts[0].instances_path) not in xml
    # Same boot, counter strictly increasing across the move, memory contents kept.
    log_b = console(b, inst)
    log_b.wait_for(r"MEMCHECK", 30)
    beats = [h for h in log_b.heartbeats()]
    assert beats and {h.boot_id for h in beats} == {boot}
    assert beats[0].seq > seq_before
    assert all(x.seq < y.seq for x, y in zip(beats, beats[1:], strict=False))
    assert log_b.boot_ids() == []  # no new boot on B
    assert {m.sha256 for m in log_b.memchecks()} == {memcheck}


def test_abort_in_flight_leaves_guest_on_source(drivers, guests):
    b, a = drivers[1], drivers[0]  # the quiet guest now lives on B: B is the source
    inst = guests["quiet"]
    boot = booted(b, inst)
    started = threading.Event()

    def on_sample(stats: JobStats) -> None:
        if stats.memory_processed > 0 and not started.is_set():
            started.set()
            threading.Thread(target=b.live_migration_abort, args=(inst,)).start()

    with overrides(b, live_migration_bandwidth=1):  # slow: time to abort
        out = migrate(b, a, inst, on_sample=on_sample)
    assert started.is_set()
    assert out.calls == ["recover"]
    assert isinstance(out.error, LiveMigrationAborted)
    assert out.final.job_type == "cancelled"
    assert only_guest_on(b, inst) and left_nothing(a, inst)
    still_beating(b, inst, boot)


def test_monitor_failure_aborts_the_job(drivers, guests):
    b, a = drivers[1], drivers[0]
    inst = guests["quiet"]
    boot = booted(b, inst)

    def broken_progress(stats: JobStats) -> None:
        if stats.memory_processed > 0:
            raise RuntimeError("the manager could not persist a sample")

    with overrides(b, live_migration_bandwidth=1):
        out = migrate(b, a, inst, on_sample=broken_progress)
    assert out.calls == ["recover"]
    assert isinstance(out.error, RuntimeError)
    # abortJob was called: libvirt has no job left on the domain
    assert b._find(inst).jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE  # noqa: SLF001
    assert only_guest_on(b, inst) and left_nothing(a, inst)
    still_beating(b, inst, boot)


# -- the guest with a disk ----------------------------------------------------------------


def test_failed_pre_live_migration_rolls_back(drivers, guests, monkeypatch):
    a, b = drivers
    inst = guests["disky"]
    boot = booted(a, inst)
    # 1. The destination already has a directory of that name: refused, kept.
    foreign = b._paths.instance_dir(inst)  # noqa: SLF001
    foreign.mkdir(parents=True)
    (foreign / "precious").write_text("not yours")
    with pytest.raises(DestinationDiskExists):
        migrate(a, b, inst)
    assert (foreign / "precious").read_text() == "not yours"
    assert not (foreign / INCOMING_MARKER).exists()
    assert_holds(b, {inst.uuid: [HELD_LEFTOVER]})  # the audit shows the foreign files
    (foreign / "precious").unlink()
    foreign.rmdir()
    # 2. VIF plugging keeps failing: bounded retries, then everything removed.
    attempts: list[int] = []

    def failing_plug(instance: Instance, network_info: NetworkInfo) -> None:
        attempts.append(1)
        raise OSError("bridge br-lab does not exist")

    monkeypatch.setattr(b, "plug_vifs", failing_plug)
    net = NetworkInfo(vifs=[VIF(id="v1", address="52:54:00:aa:bb:01")])
    with overrides(b, live_migration_retry_count=3, live_migration_retry_interval=0.0):
        with pytest.raises(MigrationError, match="after 3 attempts"):
            migrate(a, b, inst, net=net)
    assert len(attempts) == 3
    assert left_nothing(b, inst) and only_guest_on(a, inst)
    still_beating(a, inst, boot)


def test_prechecks_cpu_disk_space_and_block_migration_choice(drivers, guests):
    a, b = drivers
    inst = guests["disky"]
    booted(a, inst)
    src, dst = a.get_available_resource(), b.get_available_resource()
    checks_left = lambda: sorted(  # noqa: E731
        p.name for p in b._paths.root.iterdir() if p.name.startswith(".virtsdk-shared"))  # noqa: SLF001
    # A CPU from another vendor: refused by libvirt's compareCPU on the destination.
    foreign_cpu = dataclasses.replace(src, cpu_info={"arch": "x86_64", "vendor": "AMD",
                                                     "model": "EPYC", "features": []})
    with pytest.raises(MigrationPreCheckError, match="not compatible"):
        b.check_can_live_migrate_destination(CTX, inst, foreign_cpu, dst)
    assert checks_left() == []
    # Disk space: none free, 1 GiB when thin disks may be over-committed.
    full = dataclasses.replace(dst, local_gb_used=dst.local_gb, disk_available_least=1)
    for over_commit, ok in ((False, False), (True, True)):
        check = b.check_can_live_migrate_destination(CTX, inst, src, full,
                                                     disk_over_commit=over_commit)
        try:
            if ok:
                data = a.check_can_live_migrate_source(CTX, inst, check)
                assert data.block_migration is True
            else:
                with pytest.raises(MigrationPreCheckError, match="not enough disk"):
                    a.check_can_live_migrate_source(CTX, inst, check)
        finally:
            b.cleanup_live_migration_destination_check(CTX, check)
    # Asking for no block migration without shared storage is refused.
    check = b.check_can_live_migrate_destination(CTX, inst, src, dst, block_migration=False)
    with pytest.raises(MigrationPreCheckError, match="use block migration"):
        a.check_can_live_migrate_source(CTX, inst, check)
    b.cleanup_live_migration_destination_check(CTX, check)
    assert checks_left() == []
    assert runs_on(a, inst)


def test_block_migration_chosen_and_disk_moves(hosts, drivers, guests):
    a, b = drivers
    inst = guests["disky"]
    boot = booted(a, inst)
    marker = console(a, inst).marker()
    assert marker
    out = migrate(a, b, inst)
    assert out.error is None and out.calls == ["post"]
    assert out.data.block_migration is True and out.data.is_shared_instance_path is False
    assert only_guest_on(b, inst) and left_nothing(a, inst)
    disk = b._paths.disk(inst, "disk")  # noqa: SLF001
    head = read_disk_head(disk)
    assert head.startswith(f"VSDKMARK {marker}\n".encode())
    # Only the overlay moved; it now sits on B's copy of the base image.
    overlay = disk_info(disk)
    assert overlay.format == "qcow2" and overlay.backing_file
    assert Path(overlay.backing_file).parent == b._paths.image_cache  # noqa: SLF001
    assert Path(overlay.backing_file).is_file()
    still_beating(b, inst, boot)


def read_disk_head(disk: Path) -> bytes:
    """The first 512 bytes the guest sees on ``disk``, read through QEMU's block layer
    (the file is qcow2) with the guest still running (shared read)."""
    out, _ = processutils.execute(
        "qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -v 0 512", str(disk))
    data = bytearray()
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]{8}:\s+((?:[0-9a-f]{2} ){1,16})", line)
        if m:
            data.extend(bytes.fromhex(m.group(1).replace(" ", "")))
    return bytes(data)


def test_shared_instance_path_detected_and_kept(hosts, drivers, guests):
    """Host A configured with host B's instances directory: the storage is shared, so
    no block migration, nothing created or removed, the disk file simply changes
    hands.  The directory is a local one seen by both hosts, which libvirt's own
    safety check cannot know is shared (it looks for NFS, Ceph...): the source runs
    with ``live_migration_extra_flags = unsafe``, as an operator would for such a
    filesystem."""
    b = drivers[1]
    inst = guests["disky"]  # on B since the block migration
    boot = booted(b, inst)
    a_shared = make_driver(hosts[0], instances_path=str(hosts[1].instances_path))
    disk = b._paths.disk(inst, "disk")  # noqa: SLF001
    try:
        with overrides(b, live_migration_extra_flags=["unsafe"]):
            out = migrate(b, a_shared, inst)
        assert out.error is None and out.calls == ["post"]
        assert out.data.is_shared_instance_path and out.data.is_shared_block_storage
        assert out.data.block_migration is False
        assert runs_on(a_shared, inst) and b._find(inst) is None  # noqa: SLF001
        assert disk.is_file()  # the shared directory was kept by post_live_migration
        assert a_shared._lookup(inst).XMLDesc(0).count(str(disk)) == 1  # noqa: SLF001
        still_beating(a_shared, inst, boot)
    finally:
        a_shared.destroy(CTX, inst, NET)
        a_shared.cleanup_host(a_shared.host)


# -- the dirtying guest --------------------------------------------------------------------


def test_dirtying_guest_does_not_converge_under_cap(drivers, guests):
    a, b = drivers
    inst = guests["dirty"]
    boot = booted(a, inst)
    console(a, inst).wait_for(r"DIRTY \d+", 30)
    bound_iterations = 4  # the first pass, then three more at max downtime 500 ms
    reached = threading.Event()

    def on_sample(stats: JobStats) -> None:
        if stats.memory_iteration >= bound_iterations and not reached.is_set():
            reached.set()
            threading.Thread(target=a.live_migration_abort, args=(inst,)).start()

    with overrides(a, live_migration_bandwidth=BW_CAP_MIB):
        out = migrate(a, b, inst, on_sample=on_sample)
    assert reached.is_set(), "the migration ended before the bound: it converged"
    assert out.calls == ["recover"] and isinstance(out.error, LiveMigrationAborted)
    late = [s for s in out.samples if s.memory_iteration >= 2]
    assert late and min(s.memory_remaining for s in late) > 0
    assert max(s.memory_dirty_rate for s in late) > 0
    # the cancelled job keeps its last real sample, not libvirt's empty job
    assert out.final.job_type == "cancelled"
    assert out.final.memory_iteration >= bound_iterations
    assert out.final.data_processed > 0 and out.final.time_elapsed_ms > 0
    assert not out.final.downtime_measured
    assert runs_on(a, inst) and left_nothing(b, inst)
    still_beating(a, inst, boot)


def vcpu_bandwidth(dom: libvirt.virDomain) -> tuple[str | None, str | None]:
    """``(period, quota)`` of the running guest's live definition (None: unset); read
    from the XML, which needs no job, so it works while a migration runs."""
    from virtsdk_libvirt import xmlutil

    root = xmlutil.parse(dom.XMLDesc(0))
    return root.findtext("cputune/period"), root.findtext("cputune/quota")


def host_vcpu_quotas(host, inst: Instance) -> list[int]:
    """``cpu.cfs_quota_us`` of the instance's vCPU cgroups under the lab host's own
    cgroup (the host's libvirtd runs in a cgroup namespace rooted there)."""
    from virtsdk_lab import cgroups

    mount = cgroups.cpu_mount()
    assert mount is not None
    top = mount[0] / cgroups.host_cgroup(host.netns) / "machine"
    return [int(p.read_text()) for p in
            top.glob(f"qemu-*-{inst.name}.libvirt-qemu/vcpu*/cpu.cfs_quota_us")]


def test_adaptive_cpu_limit_holds_during_the_migration_and_is_lifted_after_it(hosts,
                                                                             drivers,
                                                                             guests):
    """The adaptive controller's CPU limit is the vCPUs' CFS bandwidth, set before the
    job (libvirt refuses it during one) and lifted when the guest stays; it is the
    source host's cgroup only (the destination's QEMU, a domain of the same name, has
    its own)."""
    from virtsdk_libvirt.live_migration.source import cpu_limit_bandwidth

    a, b = drivers
    inst = guests["dirty"]
    boot = booted(a, inst)
    dom = a._lookup(inst)  # noqa: SLF001
    # the lab's libvirtd has the cgroup cpu controller
    assert dom.schedulerParameters()["vcpu_quota"] == -1
    seen: list[tuple[str | None, str | None]] = []
    quotas: list[tuple[list[int], list[int]]] = []

    def on_sample(stats: JobStats) -> None:
        if stats.memory_iteration >= 1 and stats.timeline and not seen:
            seen.append(vcpu_bandwidth(dom))
            quotas.append((host_vcpu_quotas(hosts[0], inst), host_vcpu_quotas(hosts[1], inst)))
            threading.Thread(target=a.live_migration_abort, args=(inst,)).start()

    # a 1 MiB/s cap for a guest dirtying ~4 MiB/s: the limit is far above zero
    with overrides(a, live_migration_bandwidth=1, live_migration__policies=["adaptive"]):
        out = migrate(a, b, inst, on_sample=on_sample)
    assert out.calls == ["recover"] and isinstance(out.error, LiveMigrationAborted)
    # the limit chosen before the start, raised while it did not bind
    limits = [int(m.group(1)) for e in out.final.timeline
              for m in [re.search(r"CPU limit (\d+)% for the migration", e["reason"])] if m]
    assert limits and limits == sorted(limits), out.final.timeline
    limit = limits[-1]
    assert 50 <= limit <= 99, out.final.timeline
    period, quota = cpu_limit_bandwidth(limit)
    assert seen == [(str(period), str(quota))]
    # the limit is in the source host's cgroup; the destination's vCPU is unlimited
    assert quotas == [([quota], [-1])]
    assert vcpu_bandwidth(dom)[1] in (None, "-1")  # lifted
    assert dom.schedulerParameters()["vcpu_quota"] == -1
    assert runs_on(a, inst) and left_nothing(b, inst)
    still_beating(a, inst, boot)


def test_dirtying_guest_completes_with_postcopy_policy(drivers, guests):
    a, b = drivers
    inst = guests["dirty"]
    boot = booted(a, inst)
    memcheck = console(a, inst).memchecks()[0].sha256
    with overrides(a, live_migration_bandwidth=BW_CAP_MIB,
                   live_migration__permit_post_copy=True,
                   live_migration__postcopy_after_iterations=2):
        out = migrate(a, b, inst)
    assert out.error is None and out.calls == ["post"]
    assert out.final.job_type == "completed" and out.final.postcopy
    # measured by QEMU and handed over in libvirt's job-completed event, not the
    # expected downtime of the last running sample
    assert out.final.downtime_measured and out.final.downtime_ms > 0, out.final
    assert out.final.expected_downtime_ms == 0
    # every byte, the post-copy phase included
    assert out.final.data_processed >= max(s.data_processed for s in out.samples[:-1])
    print(f"post-copy migration: downtime {out.final.downtime_ms} ms, "
          f"iterations {max(s.memory_iteration for s in out.samples)}")
    assert only_guest_on(b, inst) and left_nothing(a, inst)
    still_beating(b, inst, boot)
    log_b = console(b, inst)
    log_b.wait_for("MEMCHECK", 30)
    assert {m.sha256 for m in log_b.memchecks()} == {memcheck}


def test_force_complete_pauses_and_guest_resumes_on_destination(drivers, guests):
    b, a = drivers[1], drivers[0]  # the dirtying guest now lives on B
    inst = guests["dirty"]
    boot = booted(b, inst)
    forced = threading.Event()

    def on_sample(stats: JobStats) -> None:
        if stats.memory_iteration >= 2 and not forced.is_set():
            forced.set()
            threading.Thread(target=b.live_migration_force_complete, args=(inst,)).start()

    with overrides(b, live_migration_bandwidth=BW_CAP_MIB):
        out = migrate(b, a, inst, on_sample=on_sample)
    assert forced.is_set()
    assert out.error is None and out.calls == ["post"]
    assert out.final.job_type == "completed" and not out.final.postcopy
    assert runs_on(a, inst) and left_nothing(b, inst)  # resumed after the pause
    still_beating(a, inst, boot)
