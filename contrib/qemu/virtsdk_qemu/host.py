"""What the qemu driver's parts (live migration, observation hooks) use of the driver
of their host: :class:`QemuHost`, which :class:`virtsdk_qemu.driver.QemuDriver` is."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from oslo_config import cfg

from virtsdk.localdisk.paths import InstancePaths
from virtsdk.objects import DiskInfo, Flavor, ImageMeta, Instance
from virtsdk_qemu.guest import Guest, GuestSpec


class QemuHost(Protocol):
    """The driver of this host as its parts see it."""

    host: str
    tag: str
    conf: cfg.ConfigOpts
    paths: InstancePaths

    @property
    def name(self) -> str: ...

    @property
    def qconf(self) -> Any: ...

    @property
    def accel(self) -> str: ...

    def guest(self, instance: Instance | str, directory: Path | None = None) -> Guest: ...

    def existing(self, instance: Instance) -> Guest: ...

    def guest_spec(self, instance: Instance, flavor: Flavor, image_meta: ImageMeta,
                   vnc_listen: str | None = None) -> GuestSpec: ...

    def get_instance_disk_info(self, instance: Instance) -> list[DiskInfo]: ...

