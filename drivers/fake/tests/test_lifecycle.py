"""Fake driver lifecycle, resource accounting, configuration and discovery."""

from __future__ import annotations

import pytest
from oslo_config import cfg
from virtsdk_fake.driver import FakeDriver
from virtsdk_fake.storage import GiB, MiB

from virtsdk.driver import ComputeDriver
from virtsdk.exceptions import InstanceInvalidState, InstanceNotFound, InsufficientResources
from virtsdk.objects import Flavor, ImageMeta, Instance, NetworkInfo
from virtsdk.plugins import COMPUTE_DRIVERS, load
from virtsdk.states import PowerState

from .guest_data import BIG, SMALL


def test_loaded_by_entry_point_with_its_own_option_group(conf, fabric):
    driver = load(COMPUTE_DRIVERS, "fake", ComputeDriver)(conf, "via-loader")
    assert isinstance(driver, FakeDriver)
    assert conf.fake.fabric == fabric.name
    assert "via-loader" in fabric.hosts
    names = {o.name for o in FakeDriver.list_opts()}
    assert {"fabric", "time_scale", "host_vcpus", "shared_storage"} <= names


def test_describe_lists_every_migration_method():
    desc = FakeDriver.describe()
    assert desc.capabilities["supports_live_migration"] is True
    assert {"migrate_disk_and_power_off", "live_migration", "live_migration_abort",
            "finish_revert_migration"} <= set(desc.implemented)


def test_spawn_sizes_disks_by_flavor_and_writes_the_image(h1, fabric, spawn):
    inst = spawn(h1, BIG)
    guest = fabric.host("h1").instances[inst.uuid]
    assert len(guest.memory) == 1024 * 1024  # 1 KiB per MiB of flavor RAM
    assert {n: d.size for n, d in guest.disks.items()} == {
        "disk": 2 * GiB, "disk.local": 1 * GiB, "disk.swap": 256 * MiB}
    assert guest.disks["disk"].read(0, 25) == b"virtsdk-fake-image:img-1:"
    infos = {d.path: d for d in h1.get_instance_disk_info(inst)}
    assert infos["disk"].virt_disk_size == 2 * GiB
    assert infos["disk"].disk_size == 4096  # only the written block is stored
    assert h1.list_instances() == [inst.name]
    info = h1.get_info(inst)
    assert (info.state, info.num_cpu, info.max_mem_kb) == (PowerState.RUNNING, 2, 1024 * 1024)


def test_spawn_stopped_and_twice(h1, ctx, spawn):
    inst = Instance(name="stopped", flavor=SMALL)
    h1.spawn(ctx, inst, ImageMeta(id="i"), NetworkInfo(), power_on=False)
    assert h1.get_info(inst).state == PowerState.SHUTDOWN
    with pytest.raises(InstanceInvalidState):
        h1.spawn(ctx, inst, ImageMeta(id="i"), NetworkInfo())
    assert h1.list_instances() == ["stopped"]


def test_resource_accounting_follows_spawn_and_destroy(h1, ctx, spawn):
    before = h1.get_available_resource()
    assert (before.vcpus, before.memory_mb, before.local_gb) == (16, 65536, 1000)
    assert (before.vcpus_used, before.memory_mb_used, before.local_gb_used) == (0, 0, 0)
    a = spawn(h1, SMALL)
    spawn(h1, BIG)
    used = h1.get_available_resource()
    # BIG: 2 GiB root + 1 GiB ephemeral + 256 MiB swap -> 4 GiB rounded up
    assert (used.vcpus_used, used.memory_mb_used, used.local_gb_used) == (3, 1536, 1 + 4)
    assert used.free_ram_mb == 65536 - 1536
    h1.destroy(ctx, a, NetworkInfo())
    after = h1.get_available_resource()
    assert (after.vcpus_used, after.memory_mb_used, after.local_gb_used) == (2, 1024, 4)


def test_capacity_is_enforced_and_a_refused_spawn_leaves_nothing(conf, fabric, ctx, spawn):
    conf.set_override("host_capacity", {"tiny": "2/1024/3"}, group="fake")
    tiny = FakeDriver(conf, "tiny")
    res = tiny.get_available_resource()
    assert (res.vcpus, res.memory_mb, res.local_gb) == (2, 1024, 3)
    spawn(tiny, SMALL)
    with pytest.raises(InsufficientResources, match="RAM"):
        spawn(tiny, Flavor("fat", memory_mb=1024, vcpus=1, root_gb=1))
    with pytest.raises(InsufficientResources, match="disk"):
        spawn(tiny, Flavor("wide", memory_mb=256, vcpus=1, root_gb=5))
    assert len(tiny.list_instances()) == 1
    assert tiny.get_available_resource().memory_mb_used == 512


def test_bad_capacity_override_is_a_clear_error(conf, fabric):
    conf.set_override("host_capacity", {"odd": "lots"}, group="fake")
    with pytest.raises(cfg.Error, match="VCPUS/MEMORY_MB/LOCAL_GB"):
        FakeDriver(conf, "odd")


def test_hosts_on_one_fabric_see_each_other_and_rejoin_keeps_state(conf, fabric, h1, spawn):
    inst = spawn(h1)
    again = FakeDriver(conf, "h1")  # a restarted compute service
    assert again.list_instances() == [inst.name]
    assert fabric.host("h1").joined == 2
    conf.set_override("fabric", "elsewhere-" + fabric.name, group="fake")
    other = FakeDriver(conf, "h1")
    assert other.fabric is not fabric and other.list_instances() == []


def test_power_off_clean_and_forced(h1, fabric, spawn, ctx):
    polite = spawn(h1)
    guest = fabric.host("h1").instances[polite.uuid]
    guest.write_memory(0, b"state")
    t0 = fabric.clock.now()
    h1.power_off(polite, timeout=60, retry_interval=10)
    assert guest.last_shutdown == "clean" and guest.shutdown_requests == 1
    assert fabric.clock.now() - t0 < 60
    assert guest.read_memory(0, 5) == bytes(5)  # memory does not survive power off
    stubborn = spawn(h1, **{"fake:ignore_shutdown": "true"})
    sguest = fabric.host("h1").instances[stubborn.uuid]
    t0 = fabric.clock.now()
    h1.power_off(stubborn, timeout=60, retry_interval=10)
    assert sguest.last_shutdown == "forced" and sguest.shutdown_requests == 6
    assert fabric.clock.now() - t0 == pytest.approx(60)
    assert h1.get_info(stubborn).state == PowerState.SHUTDOWN
    h1.power_on(ctx, stubborn, NetworkInfo())
    assert h1.get_info(stubborn).state == PowerState.RUNNING and sguest.boots == 2


def test_unknown_instances(h1, ctx):
    ghost = Instance(name="ghost", flavor=SMALL)
    for call in (lambda: h1.get_info(ghost), lambda: h1.power_off(ghost),
                 lambda: h1.power_on(ctx, ghost, NetworkInfo()),
                 lambda: h1.get_instance_disk_info(ghost)):
        with pytest.raises(InstanceNotFound):
            call()
    h1.destroy(ctx, ghost, NetworkInfo())  # idempotent


def test_destroy_keeping_disks_leaves_them_accounted(h1, fabric, ctx, spawn):
    inst = spawn(h1)
    h1.destroy(ctx, inst, NetworkInfo(), destroy_disks=False)
    assert fabric.find(inst.uuid) == [("h1", "leftovers")]
    assert h1.get_available_resource().local_gb_used == 1
    h1.cleanup(ctx, inst, NetworkInfo())
    assert fabric.find(inst.uuid) == []


def test_sparse_disk_reads_writes_and_bounds(h1, fabric, spawn):
    inst = spawn(h1)
    disk = fabric.host("h1").instances[inst.uuid].disks["disk"]
    disk.write(4090, b"across-a-block")
    assert disk.read(4090, 14) == b"across-a-block"
    assert disk.read(10 * 4096, 4) == bytes(4)
    assert disk.allocated == 2 * 4096
    with pytest.raises(ValueError, match="outside"):
        disk.write(disk.size - 2, b"xyz")
