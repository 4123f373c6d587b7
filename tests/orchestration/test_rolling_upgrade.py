"""A rolling upgrade: the conductor and two computes run this release, one compute still
runs the previous one (compute RPC API 1.0, Migration 1.0).  With
``[upgrade_levels] compute = 1.0`` every flow through the old compute works and it only
ever receives what it understands; without the cap it refuses the newer messages."""

from __future__ import annotations

import oslo_messaging
import pytest
from virtsdk_fake.fabric import drop_fabric, get_fabric

from tests.orchestration.conftest import ALL_BACKENDS, boot, check_intact, make_cloud
from virtsdk import rpc
from virtsdk.compute.rpcapi import VERSIONS, ComputeAPI
from virtsdk.objects import Migration
from virtsdk.states import MigrationType, VMState

BACKENDS = ALL_BACKENDS
PREVIOUS = "1.0"
OLD_HOST = "host2"


class PreviousReleaseSerializer(rpc.VirtObjectSerializer):
    """What the old compute's RPC server reads with: records every object primitive
    that arrives, as it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict] = []

    def deserialize_entity(self, ctxt, entity):
        self._collect(entity)
        return super().deserialize_entity(ctxt, entity)

    def _collect(self, value) -> None:
        if isinstance(value, dict):
            if "virtsdk_object" in value:
                self.received.append(value)
            for item in value.values():
                self._collect(item)
        elif isinstance(value, list):
            for item in value:
                self._collect(item)


def make_previous_release(cloud) -> PreviousReleaseSerializer:
    """Turn OLD_HOST's compute service into one of the previous release: its endpoint
    answers only compute RPC API 1.0 and its server records what it is sent."""
    service = cloud.computes[OLD_HOST]
    service.manager.target = oslo_messaging.Target(version=PREVIOUS)
    recorder = PreviousReleaseSerializer()
    service._server.dispatcher.serializer = recorder  # noqa: SLF001
    return recorder


@pytest.fixture
def upgrading_cloud(tmp_path, backend):
    cloud = make_cloud(tmp_path, backend, upgrade_levels={"compute": PREVIOUS})
    yield cloud
    get_fabric(cloud.conf.fake.fabric).faults.clear()
    cloud.stop()
    drop_fabric(cloud.conf.fake.fabric)


def test_flows_through_a_compute_one_version_behind(upgrading_cloud):
    cloud = upgrading_cloud
    fabric = get_fabric(cloud.conf.fake.fabric)
    assert VERSIONS.current != PREVIOUS
    recorder = make_previous_release(cloud)
    api, ctx = cloud.api, cloud.ctx

    inst, before = boot(cloud, fabric, host="host1")
    api.live_migrate(ctx, inst.uuid, host=OLD_HOST)  # new source -> old destination
    assert api.wait(ctx, inst.uuid).host == OLD_HOST
    api.migrate(ctx, inst.uuid, host="host3")        # old source -> new destination
    assert api.wait(ctx, inst.uuid).vm_state == VMState.RESIZED
    api.revert_resize(ctx, inst.uuid)                # back onto the old compute
    assert api.wait(ctx, inst.uuid).host == OLD_HOST
    api.resize(ctx, inst.uuid, "medium")             # old source, scheduler's choice
    assert api.wait(ctx, inst.uuid).vm_state == VMState.RESIZED
    api.confirm_resize(ctx, inst.uuid)
    done = api.wait(ctx, inst.uuid)
    assert (done.vm_state, done.flavor.name) == (VMState.ACTIVE, "medium")
    check_intact(cloud, fabric, done, before, memory=False)

    migrations = [p for p in recorder.received if p["virtsdk_object"] == "Migration"]
    assert migrations, "the old compute took part in no migration"
    assert {p["version"] for p in migrations} == {PREVIOUS}
    assert not [p for p in migrations if "created_at" in p["data"]]
    # and this release's side still reads the records in full
    assert api.list_migrations(ctx, instance_uuid=inst.uuid)[-1].created_at


def test_without_the_cap_the_old_compute_refuses_newer_messages(upgrading_cloud):
    cloud = upgrading_cloud
    fabric = get_fabric(cloud.conf.fake.fabric)
    make_previous_release(cloud)
    inst, _ = boot(cloud, fabric, host=OLD_HOST)
    capped = ComputeAPI(cloud.conf)
    assert capped.instance_power_state(cloud.ctx, OLD_HOST, inst) is not None
    cloud.conf.clear_override("compute", group="upgrade_levels")
    uncapped = ComputeAPI(cloud.conf)
    with pytest.raises(oslo_messaging.RemoteError) as err:
        uncapped.instance_power_state(cloud.ctx, OLD_HOST, inst)
    assert err.value.exc_type == "UnsupportedVersion"


def test_an_unknown_cap_is_a_configuration_error(upgrading_cloud):
    cloud = upgrading_cloud
    cloud.conf.set_override("compute", "0.9", group="upgrade_levels")
    with pytest.raises(Exception, match="not a version of this RPC API"):
        ComputeAPI(cloud.conf)


def test_objects_backport_to_an_older_receiver():
    migration = Migration("i-1", "a", MigrationType.LIVE, created_at="2026-01-01T00:00:00")
    new = migration.to_primitive()
    old = migration.to_primitive({"Migration": "1.0"})
    assert (new["version"], old["version"]) == ("1.1", "1.0")
    assert "created_at" in new["data"] and "created_at" not in old["data"]
    assert Migration.from_primitive(old) == migration  # timestamps are not identity
    nested = rpc.VirtObjectSerializer({"Migration": "1.0"}).serialize_entity(
        None, {"migrations": [migration]})
    assert nested["migrations"][0]["version"] == "1.0"
    with pytest.raises(TypeError, match="cannot be read"):
        Migration.from_primitive({**new, "version": "2.0"})
