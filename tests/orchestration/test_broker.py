"""A cloud on a real broker: clouds sharing one virtual host stay apart, and with the
default configuration nothing piles up on the broker."""

from __future__ import annotations

import uuid

from virtsdk_fake.fabric import drop_fabric

from virtsdk.cloud import EmbeddedCloud
from virtsdk.states import VMState


def _cloud(tmp_path, name, transport_url, db_url, **extra):
    overrides = {"DEFAULT": {"transport_url": transport_url},
                 "database": {"connection": db_url},
                 "fake": {"fabric": f"{name}-{uuid.uuid4().hex[:6]}", "time_scale": 0.0},
                 **extra}
    cloud = EmbeddedCloud(("h1", "h2"), state_path=str(tmp_path / name),
                          overrides=overrides).start()
    cloud.api.flavor_create(cloud.ctx, "small", 256, 1, 1)
    return cloud


def _stop(*clouds):
    for cloud in clouds:
        cloud.stop()
        drop_fabric(cloud.conf.fake.fabric)


def test_two_clouds_on_one_virtual_host_do_not_take_each_others_messages(
        tmp_path, rabbit, postgres):
    vhost = rabbit.new_vhost()
    url = rabbit.url(vhost)
    a = _cloud(tmp_path, "a", url, postgres.create_database())
    b = _cloud(tmp_path, "b", url, postgres.create_database())
    try:
        assert a.conf.rpc_topic_prefix != b.conf.rpc_topic_prefix
        for _ in range(3):  # several rounds: a shared queue would lose some to the other
            for cloud in (a, b):
                inst = cloud.api.create_instance(cloud.ctx, "vm", "small", host="h1")
                assert cloud.api.wait(cloud.ctx, inst.uuid).vm_state == VMState.ACTIVE
                cloud.api.live_migrate(cloud.ctx, inst.uuid, host="h2")
                moved = cloud.api.wait(cloud.ctx, inst.uuid)
                assert (moved.vm_state, moved.host) == (VMState.ACTIVE, "h2")
        assert len(a.api.list_instances(a.ctx)) == len(b.api.list_instances(b.ctx)) == 3
        queues = rabbit.queue_depths(vhost)
        for cloud in (a, b):
            prefix = cloud.conf.rpc_topic_prefix
            assert {f"{prefix}compute.h1", f"{prefix}compute.h2",
                    f"{prefix}conductor"} <= set(queues), queues
    finally:
        _stop(a, b)


def test_default_configuration_leaves_no_messages_on_the_broker(
        tmp_path, rabbit, postgres):
    vhost = rabbit.new_vhost()
    cloud = _cloud(tmp_path, "quiet", rabbit.url(vhost), postgres.create_database())
    try:
        api, ctx = cloud.api, cloud.ctx
        inst = api.create_instance(ctx, "vm", "small", host="h1")
        api.wait(ctx, inst.uuid)
        api.live_migrate(ctx, inst.uuid, host="h2")
        api.wait(ctx, inst.uuid)
        api.migrate(ctx, inst.uuid, host="h1")
        api.wait(ctx, inst.uuid)
        api.confirm_resize(ctx, inst.uuid)
        assert api.wait(ctx, inst.uuid).host == "h1"
    finally:
        _stop(cloud)
    depths = rabbit.queue_depths(vhost)
    assert not [q for q in depths if "notifications" in q], depths
    assert sum(depths.values()) == 0, depths
