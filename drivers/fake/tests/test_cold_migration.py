"""Cold migration and resize with the fake driver: bytes move, nothing is lost."""

from __future__ import annotations

import pytest
from virtsdk_fake.storage import GiB

from virtsdk.exceptions import (
    InjectedFault,
    MigrationError,
    ResizeShrinkNotAllowed,
    TransferAuthError,
)
from virtsdk.objects import ColdMigrateData, Flavor, ImageMeta, Migration, NetworkInfo
from virtsdk.states import MigrationType, PowerState

from .guest_data import BIG, SMALL, disks_only, fill

NET = NetworkInfo()


def _migration(inst, src, dst, flavor):
    return Migration(inst.uuid, src.host, MigrationType.RESIZE, dst.host,
                     old_flavor=inst.flavor, new_flavor=flavor)


def _send(src, dst, inst, ctx, flavor, progress=None):
    mig = _migration(inst, src, dst, flavor)
    ticket = dst.prepare_migrate_disk_target(ctx, mig, inst, flavor)
    disks = src.migrate_disk_and_power_off(ctx, inst, dst.host, flavor, NET, timeout=30,
                                           retry_interval=5, migrate_data=ticket,
                                           progress=progress)
    return mig, disks


def _finish(dst, inst, ctx, mig, disks, flavor):
    inst.old_flavor, inst.flavor = inst.flavor, flavor
    dst.finish_migration(ctx, mig, inst, disks, NET, ImageMeta(id="img-1"),
                         resize_instance=True)


def test_resize_moves_disk_bytes_grows_disks_and_confirm_drops_the_copy(h1, h2, fabric,
                                                                        ctx, spawn):
    inst = spawn(h1, SMALL)
    before = fill(fabric, "h1", inst)
    original_root = fabric.host("h1").instances[inst.uuid].disks["disk"].copy()
    samples = []
    mig, disks = _send(h1, h2, inst, ctx, BIG, progress=samples.append)
    assert [d.path for d in disks] == ["disk"]
    assert fabric.find(inst.uuid) == [("h1", "resize_copy"), ("h2", "incoming_disks")]
    assert disks_only(fabric.host("h1").resize_copies[inst.uuid].fingerprint()) == \
        disks_only(before)
    # progress: monotonic, ends with every allocated byte
    done = [s.bytes_done for s in samples]
    assert done == sorted(done) and done[-1] == samples[-1].bytes_total == original_root.allocated

    _finish(h2, inst, ctx, mig, disks, BIG)
    moved = fabric.host("h2").instances[inst.uuid]
    assert moved.power_state == PowerState.RUNNING
    assert {n: d.size for n, d in moved.disks.items()} == {
        "disk": 2 * GiB, "disk.local": 1 * GiB, "disk.swap": 256 * 1024**2}
    root = moved.disks["disk"]
    assert root.blocks == original_root.blocks  # every stored byte, at its offset
    assert root.read(1 * GiB - 5, 5) == b"TAIL!"
    assert root.read(1 * GiB, 4096) == bytes(4096)  # the grown part is empty
    assert len(moved.memory) == 1024 * 1024  # memory sized by the new flavor

    h1.confirm_migration(ctx, mig, inst, NET)
    assert fabric.find(inst.uuid) == [("h2", "instance")]
    assert h1.get_available_resource().memory_mb_used == 0
    assert h2.get_available_resource().memory_mb_used == 1024


def test_resources_are_held_on_both_sides_until_confirm(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1, SMALL)
    mig, disks = _send(h1, h2, inst, ctx, BIG)
    assert h1.get_available_resource().memory_mb_used == 512  # the kept copy
    assert h2.get_available_resource().local_gb_used == 1  # the received disk
    _finish(h2, inst, ctx, mig, disks, BIG)
    src, dst = h1.get_available_resource(), h2.get_available_resource()
    assert (src.vcpus_used, src.memory_mb_used, src.local_gb_used) == (1, 512, 1)
    assert (dst.vcpus_used, dst.memory_mb_used, dst.local_gb_used) == (2, 1024, 4)


def test_revert_restores_the_original_bytes_and_flavor(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1, SMALL)
    before = fill(fabric, "h1", inst)
    mig, disks = _send(h1, h2, inst, ctx, BIG)
    _finish(h2, inst, ctx, mig, disks, BIG)
    fabric.host("h2").instances[inst.uuid].disks["disk"].write(0, b"written after resize")
    h2.destroy(ctx, inst, NET)
    inst.flavor = inst.old_flavor
    h1.finish_revert_migration(ctx, mig, inst, NET)
    back = fabric.host("h1").instances[inst.uuid]
    assert disks_only(back.fingerprint()) == disks_only(before)
    assert back.flavor == SMALL and back.power_state == PowerState.RUNNING
    assert fabric.find(inst.uuid) == [("h1", "instance")]


def test_same_host_resize(h1, fabric, ctx, spawn):
    inst = spawn(h1, SMALL)
    before = fill(fabric, "h1", inst)
    mig, disks = _send(h1, h1, inst, ctx, BIG)
    _finish(h1, inst, ctx, mig, disks, BIG)
    assert sorted(k for _, k in fabric.find(inst.uuid)) == ["instance", "resize_copy"]
    h1.confirm_migration(ctx, mig, inst, NET)
    grown = fabric.host("h1").instances[inst.uuid]
    assert grown.disks["disk"].read(512 * 1024**2, 10) == \
        f"disk:{inst.uuid}".encode()[:10]
    assert before["disk:disk"] != grown.fingerprint()["disk:disk"]  # size is part of it


@pytest.mark.parametrize("smaller", [
    Flavor("small-root", memory_mb=512, vcpus=1, root_gb=0),
    Flavor("no-ephemeral", memory_mb=2048, vcpus=4, root_gb=2, ephemeral_gb=0),
])
def test_shrink_is_refused_before_anything_is_touched(h1, h2, fabric, ctx, spawn, smaller):
    inst = spawn(h1, BIG)
    before = fill(fabric, "h1", inst)
    with pytest.raises(ResizeShrinkNotAllowed, match="shrink"):
        h1.migrate_disk_and_power_off(ctx, inst, "h2", smaller, NET)
    guest = fabric.host("h1").instances[inst.uuid]
    assert guest.power_state == PowerState.RUNNING and guest.fingerprint() == before
    assert fabric.find(inst.uuid) == [("h1", "instance")]


def test_transfer_fault_halfway_restores_the_source_and_cleans_the_dest(h1, h2, fabric, ctx,
                                                                       spawn):
    inst = spawn(h1, BIG)
    before = fill(fabric, "h1", inst)
    fabric.inject("migrate_disk.transfer", host="h1")
    samples = []
    with pytest.raises(InjectedFault):
        _send(h1, h2, inst, ctx, BIG, progress=samples.append)
    # it failed halfway: some bytes had been sent, not all
    assert samples and 0 < samples[-1].bytes_done < samples[-1].bytes_total
    assert samples[-1].bytes_done * 2 >= samples[-1].bytes_total
    assert fabric.find(inst.uuid) == [("h1", "instance")]
    guest = fabric.host("h1").instances[inst.uuid]
    assert guest.power_state == PowerState.SHUTDOWN
    assert disks_only(guest.fingerprint()) == disks_only(before)
    h1.finish_revert_migration(ctx, _migration(inst, h1, h2, BIG), inst, NET)
    assert h1.get_info(inst).state == PowerState.RUNNING
    # and a second attempt goes through
    mig, disks = _send(h1, h2, inst, ctx, BIG)
    _finish(h2, inst, ctx, mig, disks, BIG)
    assert disks_only(fabric.host("h2").instances[inst.uuid].fingerprint()) == \
        disks_only(before)


def test_finish_migration_fault_keeps_received_disks_for_revert(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1, SMALL)
    fill(fabric, "h1", inst)
    mig, disks = _send(h1, h2, inst, ctx, BIG)
    fabric.inject("finish_migration.resize", host="h2")
    with pytest.raises(InjectedFault):
        _finish(h2, inst, ctx, mig, disks, BIG)
    assert fabric.find(inst.uuid) == [("h1", "resize_copy"), ("h2", "incoming_disks")]
    h2.destroy(ctx, inst, NET)
    inst.flavor = SMALL
    h1.finish_revert_migration(ctx, mig, inst, NET)
    assert fabric.find(inst.uuid) == [("h1", "instance")]


def test_stale_ticket_and_missing_disks_are_refused(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1, SMALL)
    forged = ColdMigrateData(transport="fake", ticket={"host": "h2", "token": "guess"})
    h2.prepare_migrate_disk_target(ctx, _migration(inst, h1, h2, BIG), inst, BIG)
    with pytest.raises(TransferAuthError):
        h1.migrate_disk_and_power_off(ctx, inst, "h2", BIG, NET, migrate_data=forged)
    assert h1.get_info(inst).state == PowerState.RUNNING
    with pytest.raises(MigrationError, match="no disks were received"):
        h2.finish_migration(ctx, _migration(inst, h1, h2, BIG), inst, [], NET,
                            ImageMeta(id="x"), True)


def test_abort_migrate_disk_target_drops_partial_disks(h1, h2, fabric, ctx, spawn):
    inst = spawn(h1, SMALL)
    fabric.inject("finish_migration", host="h2")
    mig, disks = _send(h1, h2, inst, ctx, SMALL)
    h2.abort_migrate_disk_target(ctx, inst, ColdMigrateData())
    assert fabric.find(inst.uuid) == [("h1", "resize_copy")]
    assert h2.get_available_resource().local_gb_used == 0
