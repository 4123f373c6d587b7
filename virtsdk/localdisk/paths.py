"""Where an instance's files live on a host.

Layout under a driver's instances directory (``[libvirt] instances_path``,
``[qemu] instances_path``...)::

    <instances_path>/<uuid>/            the instance directory
        disk, disk.local, disk.swap     disks (qcow2 overlays or raw files)
        console.log                     serial console output
    <instances_path>/<uuid>_resize/     the source's kept copy during a resize
    <image_cache_path>/                 base images, kernels and initrds

Shared by every driver that keeps an instance's files in a directory of its own
(libvirt, qemu), on the host that owns the files.
Every path is built from a validated UUID, and every name received from another
host goes through :meth:`InstancePaths.received` (``virtsdk.validation.confine_path``)
so nothing can land outside the instances directory.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

from virtsdk.exceptions import UnsafePath
from virtsdk.objects import Instance
from virtsdk.validation import confine_path

RESIZE_SUFFIX = "_resize"
CONSOLE_LOG = "console.log"


def checked_uuid(value: str) -> str:
    """Return ``value`` in canonical form if it is a UUID; raise UnsafePath if not
    (an instance UUID becomes a directory name)."""
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError as exc:
        raise UnsafePath(str(value), "<instances_path>") from exc


class InstancePaths:
    """Paths of one host's instance files.  Pure: touches nothing on disk."""

    def __init__(self, instances_path: str, image_cache_path: str = "") -> None:
        self.root = Path(instances_path).resolve()
        cache = image_cache_path or str(self.root / "_base")
        self.image_cache = Path(cache).resolve()

    def instance_dir(self, instance: Instance | str) -> Path:
        """``<instances_path>/<uuid>``; ``instance`` may be an Instance or a UUID."""
        uuid = instance.uuid if isinstance(instance, Instance) else instance
        return confine_path(self.root, checked_uuid(uuid))

    def resize_dir(self, instance: Instance | str) -> Path:
        """``<instances_path>/<uuid>_resize``: the source's copy during a resize."""
        uuid = instance.uuid if isinstance(instance, Instance) else instance
        return confine_path(self.root, checked_uuid(uuid) + RESIZE_SUFFIX)

    def disk(self, instance: Instance | str, name: str) -> Path:
        """A disk file (``disk``, ``disk.local``...) in the instance directory."""
        return self.received(self.instance_dir(instance), name)

    def console_log(self, instance: Instance | str) -> Path:
        return self.instance_dir(instance) / CONSOLE_LOG

    def received(self, directory: Path, name: str) -> Path:
        """Resolve a file name that came from another host inside ``directory``.

        Raises UnsafePath for absolute names, ``..``, NUL bytes, sub-directories
        and symlinks that lead out of ``directory``; ``directory`` itself must be
        inside the instances directory.
        """
        try:
            directory.resolve().relative_to(self.root)
        except ValueError as exc:
            raise UnsafePath(str(directory), str(self.root)) from exc
        if "/" in name:
            raise UnsafePath(name, str(directory))
        path = confine_path(directory, name)
        if path == directory.resolve():
            raise UnsafePath(name, str(directory))
        return path
