"""The public Python API of virtsdk's orchestration layer.

An embedding application builds a cloud (or connects services its own way) and calls
:class:`API`::

    from virtsdk.cloud import EmbeddedCloud

    with EmbeddedCloud(("host1", "host2", "host3"), driver="fake") as cloud:
        api, ctx = cloud.api, cloud.ctx
        api.flavor_create(ctx, "small", memory_mb=512, vcpus=1, root_gb=1)
        api.flavor_create(ctx, "medium", memory_mb=1024, vcpus=2, root_gb=2)
        vm = api.wait(ctx, api.create_instance(ctx, "web", "small").uuid)
        api.resize(ctx, vm.uuid, "medium")
        api.wait(ctx, vm.uuid)                 # vm_state RESIZED
        api.confirm_resize(ctx, vm.uuid)
        api.wait(ctx, vm.uuid)                 # ACTIVE again, on its new host
        migration = api.live_migrate(ctx, vm.uuid)
        api.wait(ctx, vm.uuid)
        api.get_migration(ctx, vm.uuid, migration.id).progress   # 100
"""

from virtsdk.api.api import API

__all__ = ["API"]
