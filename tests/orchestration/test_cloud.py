"""The embedded cloud: isolated clouds in one process, per-host configuration."""

from __future__ import annotations

import uuid

from virtsdk_fake.fabric import drop_fabric

from virtsdk.cloud import EmbeddedCloud
from virtsdk.states import VMState


def test_two_clouds_in_one_process_are_isolated_and_hosts_can_differ(tmp_path):
    fabrics = [f"iso-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    clouds = [
        EmbeddedCloud(("h1", "h2"), state_path=str(tmp_path / str(i)),
                      overrides={"fake": {"fabric": fab, "time_scale": 0.0}},
                      host_overrides={"h2": {"compute": {
                          "max_concurrent_live_migrations_inbound": 7}}}).start()
        for i, fab in enumerate(fabrics)]
    try:
        a, b = clouds
        a.api.flavor_create(a.ctx, "small", 256, 1, 1)
        b.api.flavor_create(b.ctx, "small", 256, 1, 1)
        inst = a.api.create_instance(a.ctx, "only-in-a", "small")
        assert a.api.wait(a.ctx, inst.uuid).vm_state == VMState.ACTIVE
        assert [i.name for i in a.api.list_instances(a.ctx)] == ["only-in-a"]
        assert b.api.list_instances(b.ctx) == []
        limits = {s.host: s.limits["max_inbound"] for s in a.api.list_services(a.ctx)}
        assert limits == {"h1": 2, "h2": 7}
        a.api.live_migrate(a.ctx, inst.uuid)
        assert a.api.wait(a.ctx, inst.uuid).host != inst.host
    finally:
        for cloud, fab in zip(clouds, fabrics, strict=True):
            cloud.stop()
            drop_fabric(fab)
