"""Disk image files: create, inspect, grow and rebase them with ``qemu-img``.

Called by drivers on the host that owns the files (spawn, finish_migration,
get_instance_disk_info, preparing disks for a block migration).  Every
command goes through ``oslo_concurrency.processutils.execute`` with an argument list
(no shell).  Inspection of files that may come from another host runs under resource
limits and refuses images whose metadata points outside themselves (external data
files), so a crafted image cannot make this host read arbitrary files.
"""

from __future__ import annotations

import os

from oslo_concurrency import processutils

from virtsdk.exceptions import Invalid
from virtsdk.transfer.images import (  # noqa: F401 - re-exported for drivers
    FORMATS,
    QCOW2,
    RAW,
    ImageInfo,
    UnsafeImage,
    image_info,
)

__all__ = ["FORMATS", "QCOW2", "RAW", "ImageInfo", "UnsafeImage", "allocated_bytes",
           "convert", "create_blank", "create_overlay", "grow", "image_info", "info",
           "rebase_in_place"]

#: inspect a file: the core's hardened ``qemu-img info`` (resource limits; raw and qcow2
#: only; external data files refused with UnsafeImage)
info = image_info


def create_overlay(path: str | os.PathLike[str], backing: str | os.PathLike[str],
                   backing_format: str, size: int | None = None) -> None:
    """Create a qcow2 overlay of ``backing`` (``size`` bytes, default: the backing
    file's size)."""
    args = ["qemu-img", "create", "-q", "-f", QCOW2, "-F", backing_format,
            "-b", os.fspath(backing), os.fspath(path)]
    if size:
        args.append(str(size))
    processutils.execute(*args)


def create_blank(path: str | os.PathLike[str], fmt: str, size: int) -> None:
    """Create an empty (sparse) disk of ``size`` bytes in ``fmt``."""
    if fmt not in FORMATS:
        raise Invalid(f"unsupported disk format {fmt!r}")
    processutils.execute("qemu-img", "create", "-q", "-f", fmt, os.fspath(path), str(size))


def grow(path: str | os.PathLike[str], fmt: str, size: int) -> None:
    """Grow ``path`` to ``size`` bytes.  Never shrinks: a smaller size is an error."""
    current = info(path).virtual_size
    if size < current:
        raise Invalid(f"refusing to shrink {path} from {current} to {size} bytes")
    if size > current:
        processutils.execute("qemu-img", "resize", "-q", "-f", fmt, os.fspath(path), str(size))


def rebase_in_place(path: str | os.PathLike[str], backing: str | os.PathLike[str],
                    backing_format: str) -> None:
    """Point a qcow2 overlay at ``backing`` without copying data (``rebase -u``):
    used when the same base image lives at another path on this host."""
    processutils.execute("qemu-img", "rebase", "-u", "-f", QCOW2, "-F", backing_format,
                         "-b", os.fspath(backing), os.fspath(path))


def convert(source: str | os.PathLike[str], source_format: str,
            dest: str | os.PathLike[str], dest_format: str) -> None:
    """Copy ``source`` into a new ``dest`` in ``dest_format`` (sparse)."""
    processutils.execute("qemu-img", "convert", "-q", "-f", source_format, "-O", dest_format,
                         os.fspath(source), os.fspath(dest))


def allocated_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes the file occupies on disk (sparse files count only allocated blocks)."""
    return os.stat(path).st_blocks * 512
