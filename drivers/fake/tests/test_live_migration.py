"""Live migration with the fake driver: memory and disks move once, atomically."""

from __future__ import annotations

import threading

import pytest
from virtsdk_fake.driver import FakeDriver

from virtsdk.exceptions import (
    DestinationDiskExists,
    InjectedFault,
    InvalidHostname,
    LiveMigrationAborted,
    MigrationError,
    MigrationNotFound,
    MigrationPreCheckError,
)
from virtsdk.objects import Flavor, NetworkInfo
from virtsdk.states import PowerState
from virtsdk.testing.contract import MethodRecorder

from .guest_data import SMALL, fill

NET = NetworkInfo()


def prepare(src, dst, inst, ctx, block_migration=None):
    check = dst.check_can_live_migrate_destination(
        ctx, inst, src.get_available_resource(), dst.get_available_resource(),
        block_migration=block_migration)
    try:
        data = src.check_can_live_migrate_source(ctx, inst, check)
    finally:
        dst.cleanup_live_migration_destination_check(ctx, check)
    disks = src.get_instance_disk_info(inst) if data.block_migration else None
    return dst.pre_live_migration(ctx, inst, NET, disks, data)


def migrate(src, dst, inst, ctx, samples=None, data=None):
    """Run live_migration; returns (recorder, exception or None, migrate data)."""
    data = data or prepare(src, dst, inst, ctx)
    rec = MethodRecorder()
    try:
        src.live_migration(ctx, inst, dst.host, rec.post, rec.recover,
                           bool(data.block_migration), data,
                           progress=samples.append if samples is not None else None)
    except Exception as exc:  # noqa: BLE001 - returned for the test to check
        return rec, exc, data
    return rec, None, data


def in_background(src, dst, inst, ctx, samples=None):
    """Start ``migrate`` in a thread; the dict gets rec/exc/data when it ends."""
    result: dict = {}

    def run() -> None:
        result["rec"], result["exc"], result["data"] = migrate(src, dst, inst, ctx, samples)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, result


def slow(conf, fabric, inst, timeout_per_gib=0):
    """A migration that cannot converge: 16 MiB/s link cap, 64 MiB/s dirtying."""
    conf.set_override("bandwidth", 16, group="live_migration")
    conf.set_override("completion_timeout", timeout_per_gib, group="live_migration")
    fabric.set_migration_params(inst.uuid, dirty_rate_mbps=64)


def test_block_migration_moves_memory_and_disks_exactly_once(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1, dirty="no")
    before = fill(fabric, "h1", inst)
    samples = []
    rec, exc, data = migrate(h1, h2, inst, ctx, samples)
    assert exc is None and rec.calls == ["post"]
    assert data.block_migration is True and data.graphics_listen_addr_vnc == \
        fabric.host("h2").address
    moved = fabric.host("h2").instances[inst.uuid]
    assert moved.fingerprint() == before  # memory too: the guest kept running
    assert moved.power_state == PowerState.RUNNING and moved.persistent is False
    assert fabric.find(inst.uuid) == [("h1", "leftovers"), ("h2", "instance")]
    h1.post_live_migration(ctx, inst, data)
    h2.post_live_migration_at_destination(ctx, inst, NET, True)
    h1.post_live_migration_at_source(ctx, inst, NET)
    assert fabric.find(inst.uuid) == [("h2", "instance")]
    assert moved.persistent is True
    assert h1.get_available_resource().local_gb_used == 0
    progress = [s.progress for s in samples]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert samples[-1].job_type == "completed" and samples[-1].disk_total > 0


def test_shared_storage_hands_disks_over_without_copying(conf, fabric, ctx, spawn):
    conf.set_override("shared_storage", True, group="fake")
    h1, h2 = FakeDriver(conf, "s1"), FakeDriver(conf, "s2")
    inst = spawn(h1)
    fill(fabric, "s1", inst)
    disks = fabric.host("s1").instances[inst.uuid].disks
    with pytest.raises(MigrationPreCheckError, match="shared"):
        prepare(h1, h2, inst, ctx, block_migration=True)
    assert fabric.check_files == {}
    rec, exc, data = migrate(h1, h2, inst, ctx)
    assert exc is None and rec.calls == ["post"]
    assert data.is_shared_instance_path is True and data.block_migration is False
    assert fabric.host("s2").instances[inst.uuid].disks is disks
    assert fabric.find(inst.uuid) == [("s2", "instance")]


def test_unshared_storage_needs_block_migration(h1, h2, ctx, spawn):
    inst = spawn(h1)
    with pytest.raises(MigrationPreCheckError, match="block migration is needed"):
        prepare(h1, h2, inst, ctx, block_migration=False)


def test_destination_check_refuses_what_does_not_fit(conf, fabric, h1, ctx, spawn):
    conf.set_override("host_capacity", {"small": "1/256/10"}, group="fake")
    small = FakeDriver(conf, "small")
    inst = spawn(h1)
    with pytest.raises(MigrationPreCheckError, match="RAM"):
        prepare(h1, small, inst, ctx)
    assert fabric.check_files == {}


def test_pre_live_migration_refuses_an_existing_instance_dir(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    data = prepare(h1, h2, inst, ctx)
    with pytest.raises(DestinationDiskExists):
        h2.pre_live_migration(ctx, inst, NET, None, data)
    h2.rollback_live_migration_at_destination(ctx, inst, NET, migrate_data=data)
    assert fabric.find(inst.uuid) == [("h1", "instance")]


def test_switchover_fault_recovers_on_the_source(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    before = fill(fabric, "h1", inst)
    fabric.inject("live_migration.switchover", host="h1")
    rec, exc, data = migrate(h1, h2, inst, ctx)
    assert isinstance(exc, InjectedFault) and rec.calls == ["recover"]
    assert fabric.host("h1").instances[inst.uuid].fingerprint() == before
    assert h1.get_info(inst).state == PowerState.RUNNING
    h1.rollback_live_migration_at_source(ctx, inst, data)
    h2.rollback_live_migration_at_destination(ctx, inst, NET, migrate_data=data)
    assert fabric.find(inst.uuid) == [("h1", "instance")]
    assert h2.get_available_resource().memory_mb_used == 0


@pytest.mark.parametrize("step", ["live_migration", "live_migration.start",
                                  "live_migration.iteration"])
def test_faults_anywhere_end_in_recover_exactly_once(h1, h2, fabric, ctx, spawn, step):
    inst = spawn(h1)
    fabric.inject(step, host="h1")
    rec, exc, _ = migrate(h1, h2, inst, ctx)
    assert isinstance(exc, InjectedFault) and rec.calls == ["recover"]
    assert fabric.find(inst.uuid) == [("h1", "instance"), ("h2", "incoming_live")]


def test_invalid_or_unprepared_destination(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    rec, exc, _ = migrate(h1, h2, inst, ctx, data=prepare(h1, h2, inst, ctx))
    assert exc is None
    other = spawn(h1)
    for dest, error in (("h2;reboot", InvalidHostname), ("h2", MigrationError)):
        rec = MethodRecorder()
        with pytest.raises(error):
            h1.live_migration(ctx, other, dest, rec.post, rec.recover, True)
        assert rec.calls == ["recover"]
    assert fabric.find(other.uuid) == [("h1", "instance")]


def test_abort_while_running(conf, h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    slow(conf, fabric, inst)
    held = fabric.stall("live_migration.iteration", host="h1")
    worker, result = in_background(h1, h2, inst, ctx)
    assert held.wait_reached()
    h1.live_migration_abort(inst)
    held.release()
    worker.join(30)
    assert isinstance(result["exc"], LiveMigrationAborted)
    assert result["rec"].calls == ["recover"]
    with pytest.raises(MigrationNotFound):
        h1.live_migration_abort(inst)
    assert h1.get_info(inst).state == PowerState.RUNNING


def test_abort_during_switchover_wins(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    held = fabric.stall("live_migration.switchover", host="h1")
    worker, result = in_background(h1, h2, inst, ctx)
    assert held.wait_reached()
    h1.live_migration_abort(inst)
    held.release()
    worker.join(30)
    assert isinstance(result["exc"], LiveMigrationAborted)
    assert fabric.find(inst.uuid) == [("h1", "instance"), ("h2", "incoming_live")]


def test_not_converging_under_defaults_hits_the_completion_timeout(conf, h1, h2, fabric, ctx,
                                                                   spawn):
    inst = spawn(h1)  # 512 MiB: data_gb 0.5 -> 400 s at 800 s/GiB
    slow(conf, fabric, inst, timeout_per_gib=800)
    before = fabric.host("h1").instances[inst.uuid].fingerprint()
    samples = []
    rec, exc, _ = migrate(h1, h2, inst, ctx, samples)
    assert isinstance(exc, LiveMigrationAborted) and rec.calls == ["recover"]
    last = samples[-1]
    assert last.job_type == "cancelled" and last.memory_iteration >= 2
    data_gb = last.data_total / 1024**3
    assert 800 * data_gb < last.time_elapsed_ms / 1000 <= 800 * data_gb + 1.0
    assert fabric.host("h1").instances[inst.uuid].fingerprint() == before


def test_force_complete_pauses_without_post_copy(conf, h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    slow(conf, fabric, inst)
    before = fill(fabric, "h1", inst)
    held = fabric.stall("live_migration.iteration", host="h1")
    worker, result = in_background(h1, h2, inst, ctx)
    assert held.wait_reached()
    h1.live_migration_force_complete(inst)
    assert h1.get_info(inst).state == PowerState.PAUSED
    held.release()
    worker.join(30)
    assert result["exc"] is None and result["rec"].calls == ["post"]
    moved = fabric.host("h2").instances[inst.uuid]
    assert moved.power_state == PowerState.RUNNING and moved.fingerprint() == before


def test_force_complete_switches_to_post_copy_when_permitted(conf, h1, h2, fabric, ctx,
                                                             spawn):
    conf.set_override("permit_post_copy", True, group="live_migration")
    conf.set_override("postcopy_after_iterations", 1000, group="live_migration")
    inst = spawn(h1)
    slow(conf, fabric, inst)
    before = fill(fabric, "h1", inst)
    held = fabric.stall("live_migration.iteration", host="h1")
    samples = []
    worker, result = in_background(h1, h2, inst, ctx, samples)
    assert held.wait_reached()
    h1.live_migration_force_complete(inst)
    held.release()
    worker.join(30)
    assert result["exc"] is None and result["rec"].calls == ["post"]
    assert any(s.postcopy and s.job_type == "unbounded" for s in samples)
    assert fabric.host("h2").instances[inst.uuid].fingerprint() == before
    assert fabric.find(inst.uuid) == [("h1", "leftovers"), ("h2", "instance")]


def test_post_copy_cannot_be_aborted(h1, h2, fabric, ctx, spawn, conf):
    conf.set_override("permit_post_copy", True, group="live_migration")
    inst = spawn(h1, Flavor("wide", memory_mb=4096, vcpus=1, root_gb=1))
    slow(conf, fabric, inst)
    errors = []

    def on_sample(stats):
        if stats.postcopy and not errors and stats.job_type == "unbounded":
            with pytest.raises(MigrationError, match="post-copy") as info:
                h1.live_migration_abort(inst)
            errors.append(info.value)

    data = prepare(h1, h2, inst, ctx)
    rec = MethodRecorder()
    h1.live_migration(ctx, inst, "h2", rec.post, rec.recover, True, data, progress=on_sample)
    assert errors and rec.calls == ["post"]


def test_live_migration_abort_without_a_job(h1, spawn):
    with pytest.raises(MigrationNotFound):
        h1.live_migration_abort(spawn(h1))


def test_rollback_at_destination_never_removes_a_running_guest(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    rec, exc, data = migrate(h1, h2, inst, ctx)
    assert exc is None
    h2.rollback_live_migration_at_destination(ctx, inst, NET, migrate_data=data)
    assert ("h2", "instance") in fabric.find(inst.uuid)
    assert SMALL.memory_mb == h2.get_available_resource().memory_mb_used


def test_guest_metadata_sets_how_it_dirties_memory(conf, h1, h2, fabric, ctx, spawn):
    conf.set_override("bandwidth", 64, group="live_migration")
    calm, busy = spawn(h1), spawn(h1, **{"fake:dirty_rate_mbps": "48",
                                         "fake:working_set_mb": "256"})
    iterations = []
    for inst in (calm, busy):
        samples = []
        rec, exc, _ = migrate(h1, h2, inst, ctx, samples)
        assert exc is None and rec.calls == ["post"]
        iterations.append(samples[-1].memory_iteration)
        assert max(s.memory_dirty_rate for s in samples) == \
            int(float(inst.metadata.get("fake:dirty_rate_mbps", 0)) * 1024**2)
    assert iterations[0] == 1 and iterations[1] > 1


def test_permit_auto_converge_throttles_a_busy_guest_to_completion(conf, h1, h2, fabric, ctx,
                                                                   spawn):
    conf.set_override("permit_auto_converge", True, group="live_migration")
    inst = spawn(h1)
    slow(conf, fabric, inst)  # 64 MiB/s dirtying over a 16 MiB/s link, no timeout
    before = fill(fabric, "h1", inst)
    samples = []
    rec, exc, _ = migrate(h1, h2, inst, ctx, samples)
    assert exc is None and rec.calls == ["post"]
    assert not any(s.postcopy for s in samples)
    rates = [s.memory_dirty_rate for s in samples if s.job_type == "unbounded"]
    assert rates[-1] < 16 * 1024**2 < rates[0]  # throttled below the link speed
    assert fabric.host("h2").instances[inst.uuid].fingerprint() == before


def test_a_failing_progress_callback_aborts_and_recovers(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1)
    data = prepare(h1, h2, inst, ctx)
    rec = MethodRecorder()

    def broken(_stats):
        raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database"):
        h1.live_migration(ctx, inst, "h2", rec.post, rec.recover, True, data, progress=broken)
    assert rec.calls == ["recover"]
    assert fabric.find(inst.uuid) == [("h1", "instance"), ("h2", "incoming_live")]
    assert fabric.host("h1").jobs == {}


def test_writes_during_pre_copy_all_reach_the_destination(conf, h1, h2, fabric, ctx, spawn):
    conf.set_override("bandwidth", 64, group="live_migration")
    inst = spawn(h1)  # 512 MiB over 64 MiB/s: several samples before switch-over
    source = fabric.host("h1").instances[inst.uuid]
    written = []

    def guest_keeps_writing(stats):
        if stats.job_type == "unbounded" and inst.uuid in fabric.host("h1").instances:
            n = len(written)
            source.write_memory(8 * n, n.to_bytes(8, "little"))
            written.append(n)

    data = prepare(h1, h2, inst, ctx)
    rec = MethodRecorder()
    h1.live_migration(ctx, inst, "h2", rec.post, rec.recover, True, data,
                      progress=guest_keeps_writing)
    assert rec.calls == ["post"] and len(written) > 3
    moved = fabric.host("h2").instances[inst.uuid]
    assert [int.from_bytes(moved.read_memory(8 * n, 8), "little") for n in written] == written
    assert len(source.memory) == 0  # the source domain is gone, not duplicated
