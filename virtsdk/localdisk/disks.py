"""The local disks of an instance: which files, their guest devices and sizes.

An instance directory holds up to three disks, by fixed name: ``disk`` (root, ``vda``),
``disk.local`` (ephemeral, ``vdb``) and ``disk.swap`` (swap, ``vdc``; never migrated,
recreated empty).  Shared by drivers that keep file-backed disks in an instance directory (spawn,
get_instance_disk_info, cold migration) on the host that owns the files.  A driver
turns :meth:`LocalDisks.present` into its own device description.
"""

from __future__ import annotations

import os
from pathlib import Path

from virtsdk.exceptions import ResizeShrinkNotAllowed
from virtsdk.localdisk import images as disk
from virtsdk.localdisk.imagecache import ImageCache
from virtsdk.localdisk.paths import InstancePaths
from virtsdk.objects import DiskInfo, Flavor, ImageMeta, Instance

GiB = 1024 ** 3
MiB = 1024 ** 2
ROOT, EPHEMERAL, SWAP = "disk", "disk.local", "disk.swap"
TARGETS = {ROOT: "vda", EPHEMERAL: "vdb", SWAP: "vdc"}
MIGRATED = (ROOT, EPHEMERAL)


def supports_direct_io(directory: str | os.PathLike[str]) -> bool:
    """Whether files in ``directory`` can be opened with O_DIRECT (QEMU's
    ``cache=none``); tmpfs cannot."""
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, f".directio-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | getattr(os, "O_DIRECT", 0))
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(probe):
            os.unlink(probe)


def flavor_sizes(flavor: Flavor) -> dict[str, int]:
    """The size in bytes each disk name should have under ``flavor`` (0: none)."""
    return {ROOT: flavor.root_gb * GiB, EPHEMERAL: flavor.ephemeral_gb * GiB,
            SWAP: flavor.swap_mb * MiB}


def check_no_shrink(disks: list[DiskInfo], flavor: Flavor) -> None:
    """Raise ResizeShrinkNotAllowed if ``flavor`` is smaller than a disk the guest
    already has (root size 0 in a flavor means "the image's size": never a shrink).
    Called on the source before anything is touched."""
    sizes = flavor_sizes(flavor)
    for info in disks:
        name = os.path.basename(info.path)
        want = sizes.get(name, 0)
        if name == ROOT and want == 0:
            continue
        if name in (ROOT, EPHEMERAL) and want < info.virt_disk_size:
            raise ResizeShrinkNotAllowed(
                f"flavor {flavor.name!r} gives {name} {want} bytes but it already has "
                f"{info.virt_disk_size}; disks cannot shrink")


class LocalDisks:
    """Create, list and grow the disks in one host's instance directories."""

    def __init__(self, paths: InstancePaths, cache: ImageCache, images_type: str,
                 qemu_img_memory_mb: int = 1024) -> None:
        self.paths = paths
        self.cache = cache
        self.images_type = images_type
        self.memory_mb = qemu_img_memory_mb

    def create(self, instance: Instance, flavor: Flavor, image: ImageMeta) -> None:
        """Create the disks of a new instance in its (existing) directory."""
        sizes = flavor_sizes(flavor)
        root = self.paths.disk(instance, ROOT)
        base = self.cache.base_disk(image)
        if base is not None:
            size = max(sizes[ROOT], disk.info(base, self.memory_mb).virtual_size)
            if self.images_type == disk.QCOW2:
                disk.create_overlay(root, base, disk.RAW, size)
            else:
                disk.convert(base, disk.RAW, root, disk.RAW)
                disk.grow(root, disk.RAW, size)
        elif sizes[ROOT]:
            disk.create_blank(root, self.images_type, sizes[ROOT])
        if sizes[EPHEMERAL]:
            disk.create_blank(self.paths.disk(instance, EPHEMERAL), self.images_type,
                              sizes[EPHEMERAL])
        self.ensure_swap(instance, flavor)

    def ensure_swap(self, instance: Instance, flavor: Flavor) -> None:
        """Create the empty swap disk the flavor asks for, if it is missing."""
        size = flavor_sizes(flavor)[SWAP]
        swap = self.paths.disk(instance, SWAP)
        if size and not swap.exists():
            disk.create_blank(swap, disk.RAW, size)

    def ensure_ephemeral(self, instance: Instance, flavor: Flavor) -> None:
        """Create an empty ephemeral disk when the flavor has one and the instance
        does not yet (a resize from a flavor without ephemeral storage)."""
        size = flavor_sizes(flavor)[EPHEMERAL]
        path = self.paths.disk(instance, EPHEMERAL)
        if size and not path.exists():
            disk.create_blank(path, self.images_type, size)

    def present(self, directory: Path) -> list[str]:
        """Disk names present in ``directory``, in device order."""
        return [name for name in TARGETS if (directory / name).is_file()]

    def formats(self, instance: Instance) -> list[tuple[str, Path, str]]:
        """``(target, path, format)`` of each disk in the instance directory, in
        device order (format probed with the hardened ``qemu-img info``)."""
        directory = self.paths.instance_dir(instance)
        return [(TARGETS[name], directory / name,
                 disk.info(directory / name, self.memory_mb).format)
                for name in self.present(directory)]


    def describe(self, instance: Instance,
                 sources: list[tuple[str, str, str]]) -> list[DiskInfo]:
        """DiskInfo for each ``(target, file, format)`` of a guest.  Paths inside
        the instance directory are given relative to it (they cross hosts)."""
        directory = self.paths.instance_dir(instance)
        out = []
        for target, source, _fmt in sources:
            info = disk.info(source, self.memory_mb)
            allocated = disk.allocated_bytes(source)
            path = Path(source)
            rel = path.name if path.parent == directory else str(path)
            out.append(DiskInfo(
                path=rel, type=info.format, virt_disk_size=info.virtual_size,
                disk_size=allocated,
                backing_file=os.path.basename(info.backing_file) if info.backing_file
                else None,
                over_committed_disk_size=max(0, info.virtual_size - allocated),
                target=target))
        return out

    def grow_to_flavor(self, directory: Path, flavor: Flavor) -> None:
        """Grow root and ephemeral disks in ``directory`` to ``flavor``'s sizes
        (never shrinks; a disk already bigger is left alone)."""
        sizes = flavor_sizes(flavor)
        for name in (ROOT, EPHEMERAL):
            path = directory / name
            if not path.is_file() or not sizes[name]:
                continue
            info = disk.info(path, self.memory_mb)
            if sizes[name] > info.virtual_size:
                disk.grow(path, info.format, sizes[name])
