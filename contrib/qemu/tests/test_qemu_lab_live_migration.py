"""Live migration of a QEMU guest between two real lab hosts over QMP: the same boot
and memory contents on the destination, VNC on the destination's address, abort and
force-complete, a monitor failure; no libvirtd involved."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from virtsdk_lab.guest import ConsoleLog
from virtsdk_qemu.driver import QemuDriver

from virtsdk.context import get_admin_context
from virtsdk.exceptions import LiveMigrationAborted, MigrationPreCheckError
from virtsdk.objects import ImageMeta, Instance, JobStats, NetworkInfo
from virtsdk.states import PowerState
from virtsdk.testing import sequences
from virtsdk.testing.sequences import LiveOutcome

from .qemu_lab import clean_qemu_dir, make_qemu_driver, small_flavor

pytestmark = pytest.mark.lab

NET = NetworkInfo()
CTX = get_admin_context()
BOOT = 180.0


def migrate(src: QemuDriver, dst: QemuDriver, inst: Instance,
            on_sample: Callable[[JobStats], None] | None = None) -> LiveOutcome:
    """The compute manager's live-migration sequence between two drivers."""
    return sequences.live_migrate(src, dst, CTX, inst, network_info=NET, on_sample=on_sample)


def console(drv: QemuDriver, inst: Instance) -> ConsoleLog:
    return ConsoleLog(drv.paths.instance_dir(inst) / "console.log")


def runs_on(drv: QemuDriver, inst: Instance) -> bool:
    return drv.instance_exists(inst) and drv.get_info(inst).state == PowerState.RUNNING


def left_nothing(drv: QemuDriver, inst: Instance) -> bool:
    return not drv.instance_exists(inst) and not drv.paths.instance_dir(inst).exists()


def still_beating(drv: QemuDriver, inst: Instance, boot: str) -> int:
    log = console(drv, inst)
    last = max((b.seq for b in log.heartbeats() if b.boot_id == boot), default=0)
    return log.wait_for_heartbeat(60, boot_id=boot, after_seq=last).seq


@pytest.fixture
def pair(lab: Any) -> Iterator[tuple[QemuDriver, QemuDriver]]:
    drivers = tuple(make_qemu_driver(h, **{"live_migration.monitor_interval": 0.2})
                    for h in lab.hosts[:2])
    try:
        yield drivers  # type: ignore[misc]
    finally:
        for d in drivers:
            clean_qemu_dir(d.paths.root)


def test_live_migration_keeps_boot_and_memory_then_abort_and_force_complete(
        lab: Any, pair: tuple[QemuDriver, QemuDriver], guest_meta: ImageMeta) -> None:
    a, b = pair
    inst = Instance(name="live-quiet", flavor=small_flavor("live", memory_mb=96),
                    image=guest_meta)
    a.spawn(CTX, inst, guest_meta, NET)
    log_a = console(a, inst)
    boot = log_a.wait_for_heartbeat(BOOT).boot_id
    log_a.wait_for(r"MEMCHECK", BOOT)
    memcheck = log_a.memchecks()[0].sha256
    seq_before = still_beating(a, inst, boot)

    # -- A -> B: completed, same boot, same memory, VNC on B's address ---------------
    out = migrate(a, b, inst)
    assert out.error is None and out.calls == ["post"], out.error
    # QEMU's own figure from the completed job; it counts whole milliseconds, and an idle
    # guest switching over on one machine can take less than one (seen: 0 ms in CI)
    assert out.final.job_type == "completed" and out.final.downtime_measured
    assert out.final.downtime_ms >= 0
    assert out.final.time_elapsed_ms > 0
    assert [s.progress for s in out.samples] == sorted(s.progress for s in out.samples)
    assert runs_on(b, inst) and left_nothing(a, inst)
    log_b = console(b, inst)
    log_b.wait_for(r"MEMCHECK", 60)
    beats = log_b.heartbeats()
    assert beats and {h.boot_id for h in beats} == {boot}
    assert beats[0].seq > seq_before
    assert log_b.boot_ids() == []  # no new boot on B
    assert {m.sha256 for m in log_b.memchecks()} == {memcheck}
    definition = json.loads(next(b.paths.instance_dir(inst).glob("guest-*.json")).read_text())
    vnc = definition["argv"][definition["argv"].index("-vnc") + 1]
    assert vnc.startswith(f"{lab.hosts[1].address}:")
    assert f"{lab.hosts[1].address}:59" in lab.hosts[1].run(["ss", "-ltn"]).stdout
    # a restarted service on B finds the migrated guest
    assert make_qemu_driver(lab.hosts[1]).list_instances() == [inst.name]

    # -- B -> A, aborted in flight: the guest stays on B -----------------------------
    started = threading.Event()

    def abort_once(stats: JobStats) -> None:
        if stats.memory_processed > 0 and not started.is_set():
            started.set()
            threading.Thread(target=b.live_migration_abort, args=(inst,)).start()

    b.conf.set_override("bandwidth", 1, "live_migration")  # 1 MiB/s: time to act
    try:
        out = migrate(b, a, inst, on_sample=abort_once)
    finally:
        b.conf.clear_override("bandwidth", "live_migration")
    assert started.is_set() and out.calls == ["recover"]
    assert isinstance(out.error, LiveMigrationAborted)
    assert out.final.job_type == "cancelled"
    assert runs_on(b, inst) and left_nothing(a, inst)
    still_beating(b, inst, boot)

    # -- B -> A, forced to complete (no post-copy permitted: the guest is paused) ----
    forced = threading.Event()

    def force_once(stats: JobStats) -> None:
        if stats.memory_processed > 0 and not forced.is_set():
            forced.set()
            b.live_migration_force_complete(inst)

    b.conf.set_override("bandwidth", 1, "live_migration")
    try:
        out = migrate(b, a, inst, on_sample=force_once)
    finally:
        b.conf.clear_override("bandwidth", "live_migration")
    assert forced.is_set()
    assert out.error is None and out.calls == ["post"], out.error
    assert runs_on(a, inst) and left_nothing(b, inst)
    still_beating(a, inst, boot)
    console(a, inst).wait_for(r"MEMCHECK", 60)
    assert console(a, inst).boot_ids() == []
    assert {m.sha256 for m in console(a, inst).memchecks()} == {memcheck}


def test_guest_with_local_disk_refuses_live_migration_without_block_migration(
        lab: Any, pair: tuple[QemuDriver, QemuDriver], guest_meta: ImageMeta) -> None:
    a, b = pair
    inst = Instance(name="live-noblock", flavor=small_flavor("disky", root_gb=1),
                    image=guest_meta)
    a.spawn(CTX, inst, guest_meta, NET, power_on=False)
    with pytest.raises(MigrationPreCheckError, match="needs block migration"):
        sequences.prepare_live(a, b, CTX, inst, block_migration=False, network_info=NET)
    assert not list(b.paths.root.glob(".virtsdk-shared-check-*"))
    assert left_nothing(b, inst)


def test_force_complete_switches_to_post_copy_when_permitted(
        lab: Any, pair: tuple[QemuDriver, QemuDriver], guest_meta: ImageMeta) -> None:
    a, b = pair
    for drv in pair:
        drv.conf.set_override("permit_post_copy", True, "live_migration")
    a.conf.set_override("bandwidth", 1, "live_migration")  # 1 MiB/s: time to act
    # post-copy is unlimited by default and a 96 MiB guest then finishes before the
    # monitor's next sample; a cap keeps the post-copy phase observable
    a.conf.set_override("postcopy_bandwidth", 16, "live_migration")
    inst = Instance(name="live-postcopy", flavor=small_flavor("pc", memory_mb=96),
                    image=guest_meta)
    a.spawn(CTX, inst, guest_meta, NET)
    log_a = console(a, inst)
    boot = log_a.wait_for_heartbeat(BOOT).boot_id
    log_a.wait_for(r"MEMCHECK", BOOT)
    memcheck = log_a.memchecks()[0].sha256
    forced = threading.Event()

    def force_once(stats: JobStats) -> None:
        if stats.memory_processed > 0 and not forced.is_set():
            forced.set()
            a.live_migration_force_complete(inst)

    out = migrate(a, b, inst, on_sample=force_once)
    assert forced.is_set()
    assert out.error is None and out.calls == ["post"], out.error
    assert any(s.postcopy for s in out.samples)
    assert runs_on(b, inst) and left_nothing(a, inst)
    still_beating(b, inst, boot)
    console(b, inst).wait_for(r"MEMCHECK", 60)
    assert {m.sha256 for m in console(b, inst).memchecks()} == {memcheck}


def test_block_migration_of_a_guest_with_a_local_disk(
        lab: Any, pair: tuple[QemuDriver, QemuDriver], guest_meta: ImageMeta) -> None:
    """Not shared instance paths: the disk is mirrored to the destination's NBD export
    while the guest runs, then memory moves; the guest keeps its boot, its memory and
    its disk (the marker it wrote is found after a reboot on the destination)."""
    a, b = pair
    inst = Instance(name="live-disky", flavor=small_flavor("disky", root_gb=1),
                    image=guest_meta)
    a.spawn(CTX, inst, guest_meta, NET)
    log_a = console(a, inst)
    boot = log_a.wait_for_heartbeat(BOOT).boot_id
    log_a.wait_for(r"MEMCHECK", BOOT)
    memcheck = log_a.memchecks()[0].sha256
    marker = log_a.marker()
    assert marker is not None

    out = migrate(a, b, inst)
    assert out.error is None and out.calls == ["post"], out.error
    assert out.data is not None and out.data.block_migration
    assert any(s.disk_total > 0 for s in out.samples)
    assert runs_on(b, inst) and left_nothing(a, inst)
    still_beating(b, inst, boot)
    log_b = console(b, inst)
    log_b.wait_for(r"MEMCHECK", 60)
    assert {m.sha256 for m in log_b.memchecks()} == {memcheck} and log_b.boot_ids() == []
    assert [d.path for d in b.get_instance_disk_info(inst)] == ["disk"]

    b.power_off(inst)
    start = len(log_b.text())
    b.power_on(CTX, inst, NET)
    found = log_b.wait_for(r"MARKER (\S+) found", BOOT, start=start)
    assert found.group(1) == marker
