"""The fake driver is put together from small objects: its flows run on their own,
built from a joined host, with no FakeDriver involved."""

from __future__ import annotations

from virtsdk_fake import local
from virtsdk_fake.cold import FakeColdMigration
from virtsdk_fake.driver import FakeDriver
from virtsdk_fake.live import FakeLiveMigration
from virtsdk_fake.storage import FakeInstance

from virtsdk.driver import ComputeDriver
from virtsdk.objects import ImageMeta, Instance, Migration, NetworkInfo
from virtsdk.states import MigrationType, PowerState

from .guest_data import SMALL, disks_only, fill

NET = NetworkInfo()


def test_the_driver_inherits_only_the_interface():
    assert FakeDriver.__bases__ == (ComputeDriver,)


def test_cold_migration_flow_moves_the_disks_between_two_joined_hosts(conf, fabric, ctx):
    a, b = local.join(conf.fake, "a"), local.join(conf.fake, "b")
    src, dst = FakeColdMigration(a), FakeColdMigration(b)
    inst = Instance(name="vm", flavor=SMALL, image=ImageMeta(id="img-1"), host="a")
    guest = FakeInstance.build(inst.uuid, inst.name, SMALL.copy(), a.kib_per_mb)
    guest.power_state = PowerState.RUNNING
    with fabric.lock:
        a.state.instances[inst.uuid] = guest
    before = fill(fabric, "a", inst)

    mig = Migration(inst.uuid, "a", MigrationType.MIGRATION, "b", old_flavor=SMALL,
                    new_flavor=SMALL)
    ticket = dst.prepare_migrate_disk_target(ctx, mig, inst, SMALL)
    disks = src.migrate_disk_and_power_off(ctx, inst, "b", SMALL, NET, migrate_data=ticket)
    dst.finish_migration(ctx, mig, inst, disks, NET, inst.image, resize_instance=False)
    src.confirm_migration(ctx, mig, inst, NET)

    assert fabric.find(inst.uuid) == [("b", "instance")]
    moved = b.state.instances[inst.uuid]
    assert moved.power_state == PowerState.RUNNING
    assert disks_only(moved.fingerprint()) == disks_only(before)


def test_live_migration_flow_is_built_from_the_host_and_conf(conf, fabric):
    flow = FakeLiveMigration(local.join(conf.fake, "a"), conf)
    assert (flow.host, flow.fabric, flow.conf) == ("a", fabric, conf)
