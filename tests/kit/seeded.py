"""One-line driver bugs, each seeded into a subclass of the fake driver, and a factory
that builds any of them for the conformance kit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from oslo_config import cfg
from virtsdk_fake.clock import ManualClock
from virtsdk_fake.driver import FakeDriver
from virtsdk_fake.fabric import get_fabric
from virtsdk_fake.storage import FakeDisk

from virtsdk.driver import ComputeDriver
from virtsdk.live_migration import opts as lm_opts
from virtsdk.objects import Instance, InstanceInfo
from virtsdk.states import PowerState


def factory(cls: type[FakeDriver]) -> Callable[[str], ComputeDriver]:
    """Host name -> a ``cls`` driver on a private fabric with a manual clock."""
    conf = cfg.ConfigOpts()
    conf(args=[])
    lm_opts.register_opts(conf)
    conf.register_group(cfg.OptGroup("fake"))
    conf.register_opts(FakeDriver.list_opts(), group="fake")
    conf.set_override("fabric", f"seeded-{uuid.uuid4().hex[:8]}", group="fake")
    get_fabric(conf.fake.fabric).use_clock(ManualClock())
    return lambda host: cls(conf, host)


class LeavesSourceRunning(FakeDriver):
    def migrate_disk_and_power_off(self, context: Any, instance: Instance, *a: Any,
                                   **kw: Any) -> Any:
        out = super().migrate_disk_and_power_off(context, instance, *a, **kw)
        self.hostobj.resize_copies[instance.uuid].power_state = PowerState.RUNNING
        return out


class BlankDiskOnFinish(FakeDriver):
    def finish_migration(self, context: Any, migration: Any, instance: Instance,
                         *a: Any, **kw: Any) -> None:
        super().finish_migration(context, migration, instance, *a, **kw)
        root = self.hostobj.instances[instance.uuid].disks["disk"]
        self.hostobj.instances[instance.uuid].disks["disk"] = FakeDisk("disk", root.size)


class ListOmitsStopped(FakeDriver):
    def list_instances(self) -> list[str]:
        return sorted(i.name for i in self.hostobj.instances.values()
                      if i.power_state == PowerState.RUNNING)


class ConfirmKeepsSourceCopy(FakeDriver):
    def confirm_migration(self, *a: Any, **kw: Any) -> None:
        pass


class LiveRaisesNotImplemented(FakeDriver):
    def check_can_live_migrate_destination(self, *a: Any, **kw: Any) -> Any:
        raise NotImplementedError

    def check_can_live_migrate_source(self, *a: Any, **kw: Any) -> Any:
        raise NotImplementedError

    def pre_live_migration(self, *a: Any, **kw: Any) -> Any:
        raise NotImplementedError

    def live_migration(self, *a: Any, **kw: Any) -> None:
        raise NotImplementedError


class FinishIgnoresPowerOn(FakeDriver):
    def finish_migration(self, *a: Any, power_on: bool = True, **kw: Any) -> None:
        super().finish_migration(*a, power_on=True, **kw)


class SpawnIgnoresPowerOn(FakeDriver):
    def spawn(self, *a: Any, power_on: bool = True, **kw: Any) -> None:
        super().spawn(*a, power_on=True, **kw)


class DestroyIgnoresDestroyDisks(FakeDriver):
    def destroy(self, *a: Any, destroy_disks: bool = True, **kw: Any) -> None:
        super().destroy(*a, destroy_disks=True, **kw)


class LiveLeavesSourcePaused(FakeDriver):
    def live_migration(self, context: Any, instance: Instance, *a: Any, **kw: Any) -> None:
        source = self.hostobj.instances[instance.uuid]
        super().live_migration(context, instance, *a, **kw)
        source.power_state = PowerState.PAUSED
        self.hostobj.instances[instance.uuid] = source


class LiveCallsBothCallbacks(FakeDriver):
    def live_migration(self, context: Any, instance: Instance, dest: str, post_method: Any,
                       recover_method: Any, *a: Any, **kw: Any) -> None:
        def both(ctx: Any, inst: Instance, dst: str, block: bool, data: Any) -> None:
            post_method(ctx, inst, dst, block, data)
            recover_method(ctx, inst, dst, data)

        super().live_migration(context, instance, dest, both, recover_method, *a, **kw)


class LiveCallsNeitherCallback(FakeDriver):
    def live_migration(self, context: Any, instance: Instance, dest: str, post_method: Any,
                       recover_method: Any, *a: Any, **kw: Any) -> None:
        super().live_migration(context, instance, dest, lambda *x: None, recover_method,
                               *a, **kw)


class GetInfoLies(FakeDriver):
    def get_info(self, instance: Instance) -> InstanceInfo:
        info = super().get_info(instance)
        info.state = PowerState.RUNNING
        return info


class ClaimsLiveWithoutMethods(FakeDriver):
    live_migration = ComputeDriver.live_migration  # type: ignore[assignment]
    pre_live_migration = ComputeDriver.pre_live_migration  # type: ignore[assignment]
