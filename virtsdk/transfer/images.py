"""Disk-image formats as far as a transfer cares: raw or qcow2, and backing files.

A qcow2 overlay is sent as it is (only the overlay's own clusters travel); its
backing file is not sent.  The source reports the backing file of each disk
(:func:`backing_file_of`, in :class:`~virtsdk.transfer.base.SentFile`); the
destination asks :func:`missing_backing_files` which of them it lacks, so that the
caller can take them from its image cache or fetch them from the source.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

from oslo_concurrency import processutils

from virtsdk.exceptions import Invalid

QCOW2_MAGIC = b"QFI\xfb"
_HEADER = struct.Struct(">4sIQI")  # magic, version, backing_file_offset, backing_file_size


def image_format(path: str) -> str:
    """``qcow2`` when the file starts with the qcow2 magic, else ``raw``."""
    with open(path, "rb") as fh:
        return "qcow2" if fh.read(4) == QCOW2_MAGIC else "raw"


def backing_file_of(path: str) -> str | None:
    """The backing file recorded in a qcow2 header (as written there), or None.

    Reads only the header; never follows the chain.
    """
    with open(path, "rb") as fh:
        header = fh.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return None
        magic, _version, offset, size = _HEADER.unpack(header)
        if magic != QCOW2_MAGIC or offset == 0 or size == 0 or size > 4096:
            return None
        fh.seek(offset)
        raw = fh.read(size)
    return raw.decode("utf-8", errors="strict")


QCOW2 = "qcow2"
RAW = "raw"
FORMATS = (QCOW2, RAW)


class UnsafeImage(Invalid):
    """An image file whose metadata this host refuses to use."""


@dataclass
class ImageInfo:
    """What ``qemu-img info`` says about one image (sizes in bytes)."""

    path: str
    format: str
    virtual_size: int
    actual_size: int
    backing_file: str | None = None
    backing_format: str | None = None


def image_info(path: str | os.PathLike[str], memory_mb: int = 1024) -> ImageInfo:
    """Inspect ``path`` with ``qemu-img info --force-share`` (works while a guest runs).

    Called by drivers on the host that holds the file, including for files received
    from another host, so it is hardened: ``qemu-img`` runs under memory and CPU
    limits, and formats other than raw/qcow2 or a qcow2 with an external data file
    (which would make this host read an arbitrary file) raise :class:`UnsafeImage`.
    """
    limits = processutils.ProcessLimits(address_space=memory_mb * 1024 * 1024, cpu_time=30)
    out, _err = processutils.execute("qemu-img", "info", "--force-share", "--output=json",
                                     os.fspath(path), prlimit=limits)
    data = json.loads(out)
    fmt = data.get("format", "")
    if fmt not in FORMATS:
        raise UnsafeImage(f"{path}: image format {fmt!r} is not one of {FORMATS}")
    spec = (data.get("format-specific") or {}).get("data") or {}
    if spec.get("data-file"):
        raise UnsafeImage(f"{path}: qcow2 with an external data file ({spec['data-file']}) "
                          "refused")
    return ImageInfo(
        path=os.fspath(path),
        format=fmt,
        virtual_size=int(data.get("virtual-size", 0)),
        actual_size=int(data.get("actual-size", 0)),
        backing_file=data.get("full-backing-filename") or data.get("backing-filename"),
        backing_format=data.get("backing-filename-format"),
    )


def resolve_backing(image_path: str, backing: str) -> str:
    """A backing file name as qemu resolves it: relative names are relative to the
    directory of the overlay."""
    if os.path.isabs(backing):
        return backing
    return os.path.normpath(os.path.join(os.path.dirname(image_path), backing))


def missing_backing_files(received: list[tuple[str, str | None]],
                          search_dirs: list[str] | None = None) -> list[str]:
    """Destination: which backing files of the received disks are not here.

    ``received`` holds ``(destination path, backing file as reported by the
    source)`` pairs.  A backing file counts as present when it exists where the
    overlay points (absolute, or relative to the overlay) or a file of the same base
    name exists in one of ``search_dirs`` (e.g. the image cache).  Returns the
    backing names the caller must fetch, each once, in order of first use.
    """
    missing: list[str] = []
    for dest_path, backing in received:
        if not backing:
            continue
        if os.path.exists(resolve_backing(dest_path, backing)):
            continue
        base = os.path.basename(backing)
        if any(os.path.exists(os.path.join(d, base)) for d in search_dirs or []):
            continue
        if backing not in missing:
            missing.append(backing)
    return missing
