"""Data objects survive the JSON round trip that every RPC argument takes."""

from __future__ import annotations

import json

import pytest

from virtsdk.exceptions import InvalidFlavor
from virtsdk.objects import (
    DiskInfo,
    Flavor,
    Instance,
    JobStats,
    LiveMigrateData,
    Migration,
    from_primitive,
    to_primitive,
)
from virtsdk.states import MigrationStatus, MigrationType, TaskState, VMState


def roundtrip(value):
    return from_primitive(json.loads(json.dumps(to_primitive(value))))


def test_nested_objects_and_enums_round_trip():
    inst = Instance("vm1", Flavor("m1.small", 512, 1, 1), vm_state=VMState.ACTIVE,
                    task_state=TaskState.MIGRATING, new_flavor=Flavor("m1.big", 1024, 2, 2))
    back = roundtrip(inst)
    assert back == inst
    assert isinstance(back.vm_state, VMState) and isinstance(back.task_state, TaskState)
    assert isinstance(back.new_flavor, Flavor)


def test_containers_of_objects_round_trip():
    data = {"disks": [DiskInfo("disk", "qcow2", 10, 5, backing_file="base")],
            "md": LiveMigrateData(block_migration=True, serial_listen_ports=[1, 2])}
    assert roundtrip(data) == data


def test_migration_defaults_and_status_enum():
    mig = Migration("uuid", "a", MigrationType.LIVE)
    back = roundtrip(mig)
    assert back.status is MigrationStatus.ACCEPTED
    assert back.migration_type is MigrationType.LIVE


def test_unknown_fields_from_a_newer_peer_are_ignored():
    prim = to_primitive(Flavor("f", 1, 1, 1))
    prim["data"]["from_the_future"] = 1
    assert from_primitive(prim) == Flavor("f", 1, 1, 1)


def test_unserialisable_values_fail_loudly():
    with pytest.raises(TypeError):
        to_primitive({"x": object()})


@pytest.mark.parametrize("kwargs", [
    {"memory_mb": 0}, {"vcpus": -1}, {"root_gb": -1}, {"memory_mb": "512"}, {"vcpus": True},
])
def test_bad_flavors_are_refused(kwargs):
    args = {"name": "f", "memory_mb": 512, "vcpus": 1, "root_gb": 1} | kwargs
    with pytest.raises(InvalidFlavor):
        Flavor(**args)


def test_job_stats_progress_is_100_minus_remaining_percent():
    assert JobStats(data_total=200, data_remaining=50).progress == 75.0
    assert JobStats().progress == 0.0


# -- a driver's typed live-migrate data (a subclass registered when its module loads) ---


def test_driver_subclass_round_trips_with_its_typed_fields():
    from virtsdk_fake.migrate_data import FakeLiveMigrateData

    data = FakeLiveMigrateData(block_migration=True, fabric="f1", checked_on="h2")
    back = roundtrip(data)
    assert type(back) is FakeLiveMigrateData and back == data
    assert to_primitive(data)["bases"] == ["LiveMigrateData"]


def test_subclass_unknown_here_is_forwarded_unchanged():
    """A conductor that never loaded the driver decodes the driver's data as the base
    class and sends it on with the driver's class, version and fields intact."""
    prim = to_primitive(LiveMigrateData(block_migration=True, filename="chk"))
    prim.update({"virtsdk_object": "SomeDriverLiveMigrateData", "version": "1.3",
                 "bases": ["LiveMigrateData"]})
    prim["data"]["driver_secret_dir"] = "/srv/x"
    here = from_primitive(json.loads(json.dumps(prim)))
    assert type(here) is LiveMigrateData and here.filename == "chk"
    here.is_shared_block_storage = False  # the common fields stay usable
    again = json.loads(json.dumps(to_primitive(here)))
    assert again["virtsdk_object"] == "SomeDriverLiveMigrateData"
    assert again["version"] == "1.3"
    assert again["data"]["driver_secret_dir"] == "/srv/x"
    assert again["data"]["is_shared_block_storage"] is False


def test_unknown_class_without_a_known_base_is_refused():
    prim = {"virtsdk_object": "Nope", "version": "1.0", "data": {}, "bases": ["Nada"]}
    with pytest.raises(TypeError, match="unknown object type"):
        from_primitive(prim)


def test_driver_data_adopts_a_base_object_and_keeps_its_fields():
    from virtsdk_fake.migrate_data import FakeLiveMigrateData

    base = LiveMigrateData(block_migration=False, filename="chk")
    mine = FakeLiveMigrateData.of(base)
    assert mine.filename == "chk" and mine.block_migration is False and mine.fabric == ""
    assert FakeLiveMigrateData.of(mine) is mine
