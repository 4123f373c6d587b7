"""A whole driver in one file: the "write a driver in 15 minutes" tutorial's result.

Guests live in memory; all hosts of one process share :data:`WORLD`, so a migration
moves real bytes from one host's dict to another's.  Lifecycle, the four observation
hooks, cold migration and resize; the conformance kit passes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from virtsdk.context import RequestContext
from virtsdk.driver import Capabilities, ComputeDriver, DiskObservation
from virtsdk.exceptions import InstanceNotFound, ResizeShrinkNotAllowed
from virtsdk.objects import (
    ColdMigrateData,
    DiskInfo,
    Flavor,
    HostResources,
    ImageMeta,
    Instance,
    InstanceInfo,
    Migration,
    NetworkInfo,
)
from virtsdk.states import PowerState

GiB = 1024**3


@dataclass
class Guest:
    uuid: str
    name: str
    disk: bytearray  # the first bytes of the root disk; its size is kept apart
    disk_size: int
    state: PowerState = PowerState.SHUTDOWN


@dataclass
class TinyHost:
    guests: dict[str, Guest] = field(default_factory=dict)  # defined here
    kept: dict[str, Guest] = field(default_factory=dict)  # cold migration: the source copy
    incoming: dict[str, Guest] = field(default_factory=dict)  # disks received


#: every host of this process, by name
WORLD: dict[str, TinyHost] = {}


class TinyDriver(ComputeDriver):
    """In-memory guests shared by every host of one process (tutorial driver)."""

    name: ClassVar[str] = "tiny"
    capabilities: ClassVar[Capabilities] = Capabilities(
        supports_cold_migration=True, supports_resize=True)

    def __init__(self, conf: object, host: str) -> None:
        super().__init__(conf, host)  # type: ignore[arg-type]
        self.me = WORLD.setdefault(host, TinyHost())

    def _guest(self, instance: Instance) -> Guest:
        try:
            return self.me.guests[instance.uuid]
        except KeyError:
            raise InstanceNotFound(instance.uuid, self.host) from None

    # -- lifecycle ------------------------------------------------------------------------

    def spawn(self, context: RequestContext, instance: Instance, image_meta: ImageMeta,
              network_info: NetworkInfo,               power_on: bool = True) -> None:
        guest = Guest(instance.uuid, instance.name, bytearray(4096),
                      instance.flavor.root_gb * GiB)
        guest.state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        self.me.guests[instance.uuid] = guest

    def destroy(self, context: RequestContext, instance: Instance, network_info: NetworkInfo,
                destroy_disks: bool = True) -> None:
        guest = self.me.guests.pop(instance.uuid, None)
        self.me.incoming.pop(instance.uuid, None)
        if guest is not None and not destroy_disks:
            guest.state = PowerState.SHUTDOWN
            self.me.incoming[instance.uuid] = guest  # the disks stay behind

    def power_off(self, instance: Instance, timeout: int = 0, retry_interval: int = 0) -> None:
        self._guest(instance).state = PowerState.SHUTDOWN

    def power_on(self, context: RequestContext, instance: Instance,
                 network_info: NetworkInfo) -> None:
        self._guest(instance).state = PowerState.RUNNING

    def get_info(self, instance: Instance) -> InstanceInfo:
        return InstanceInfo(state=self._guest(instance).state)

    def list_instances(self) -> list[str]:
        return sorted(g.name for g in self.me.guests.values())

    def get_available_resource(self, nodename: str | None = None) -> HostResources:
        return HostResources(hostname=self.host, vcpus=8, memory_mb=16384, local_gb=100)

    # -- observation hooks ---------------------------------------------------------------

    def observe_guests(self) -> dict[str, PowerState]:
        every = [*self.me.guests.values(), *self.me.kept.values()]
        return {g.uuid: g.state for g in every if g.state == PowerState.RUNNING}

    def observe_footprint(self, instance: Instance) -> list[str]:
        places = {"guest": self.me.guests, "kept copy": self.me.kept,
                  "received disk": self.me.incoming}
        return [what for what, where in places.items() if instance.uuid in where]

    def write_disk_marker(self, instance: Instance, marker: bytes) -> None:
        self._guest(instance).disk[1024:1024 + len(marker)] = marker

    def observe_disk(self, instance: Instance) -> DiskObservation:
        guest = self._guest(instance)
        return DiskObservation(bytes(guest.disk[1024:1024 + self.MARKER_SIZE]),
                               guest.disk_size)

    # -- cold migration and resize -------------------------------------------------------

    def migrate_disk_and_power_off(
        self, context: RequestContext, instance: Instance, dest: str, flavor: Flavor,
        network_info: NetworkInfo,         timeout: int = 0, retry_interval: int = 0,
        migrate_data: ColdMigrateData | None = None, progress: object = None,
    ) -> list[DiskInfo]:
        guest = self._guest(instance)
        if flavor.root_gb * GiB < guest.disk_size:
            raise ResizeShrinkNotAllowed(f"{instance.uuid}: the root disk cannot shrink")
        guest.state = PowerState.SHUTDOWN
        self.me.kept[instance.uuid] = self.me.guests.pop(instance.uuid)
        WORLD.setdefault(dest, TinyHost()).incoming[instance.uuid] = Guest(
            guest.uuid, guest.name, bytearray(guest.disk), guest.disk_size)
        return [DiskInfo(path="disk", type="raw", virt_disk_size=guest.disk_size,
                         disk_size=len(guest.disk))]

    def abort_migrate_disk_target(self, context: RequestContext, instance: Instance,
                                  migrate_data: ColdMigrateData) -> None:
        self.me.incoming.pop(instance.uuid, None)

    def finish_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        disk_info: list[DiskInfo], network_info: NetworkInfo, image_meta: ImageMeta,
        resize_instance: bool,         power_on: bool = True,
    ) -> None:
        guest = self.me.incoming.pop(instance.uuid)
        if resize_instance:
            guest.disk_size = max(guest.disk_size, instance.flavor.root_gb * GiB)
        guest.state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        self.me.guests[instance.uuid] = guest

    def confirm_migration(self, context: RequestContext, migration: Migration,
                          instance: Instance, network_info: NetworkInfo) -> None:
        self.me.kept.pop(instance.uuid, None)

    def finish_revert_migration(
        self, context: RequestContext, migration: Migration, instance: Instance,
        network_info: NetworkInfo, power_on: bool = True,
    ) -> None:
        guest = self.me.kept.pop(instance.uuid, None) or self._guest(instance)
        guest.state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        self.me.guests[instance.uuid] = guest
