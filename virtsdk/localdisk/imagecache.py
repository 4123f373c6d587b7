"""This host's cache of base images, kernels and initrds (a driver's ``image_cache_path``).

Images are files (``ImageMeta.location``, ``properties['kernel']``/``['initrd']``);
the cache holds one local copy of each, named after the image id and role, so that
many qcow2 overlays share one base and a cold-migrated overlay finds its base again on
the destination.  Called by a driver's spawn and finish_migration on the host that runs the guest.
Concurrent fetches of the same file are serialised with an external
``oslo_concurrency.lockutils`` lock; a file appears in the cache only complete
(copied to a temporary name, then renamed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from oslo_concurrency import lockutils, processutils

from virtsdk.exceptions import Invalid
from virtsdk.localdisk import images as disk
from virtsdk.objects import ImageMeta


class ImageUnavailable(Invalid):
    """The image (or its kernel/initrd) cannot be read on this host."""


class ImageCache:
    """Base images on one host, under ``directory``."""

    def __init__(self, directory: str | os.PathLike[str],
                 allowed_dirs: list[str] | None = None) -> None:
        self.directory = Path(directory)
        self.allowed_dirs = [Path(d).resolve() for d in (allowed_dirs or [])]

    def check_source(self, image: ImageMeta, role: str, source: str) -> Path:
        """The resolved ``source`` of ``role``; refuses (ImageUnavailable) a file
        outside ``allowed_dirs`` (when set) or one that is not a regular file."""
        path = Path(source).resolve()
        if self.allowed_dirs and not any(
                d == path or d in path.parents for d in self.allowed_dirs):
            raise ImageUnavailable(
                f"image {image.id}: {role} {source!r} is outside the image directories")
        if not path.is_file():
            raise ImageUnavailable(f"image {image.id}: {role} {source!r} is not a readable file")
        return path

    def cache_name(self, image: ImageMeta, role: str) -> str:
        """File name of ``role`` (``disk``, ``kernel``, ``initrd``) of ``image``."""
        digest = hashlib.sha256(f"{image.id}\0{role}".encode()).hexdigest()[:40]
        return f"{digest}.{role}"

    def path_of(self, image: ImageMeta, role: str) -> Path:
        return self.directory / self.cache_name(image, role)

    def base_disk(self, image: ImageMeta) -> Path | None:
        """The cached raw base disk of ``image`` (fetched if missing), or None when
        the image has no disk (a kernel + initrd image)."""
        if not image.location:
            return None
        return self._fetch(image, "disk", image.location, image.disk_format)

    def kernel_and_initrd(self, image: ImageMeta) -> tuple[Path | None, Path | None]:
        """Cached kernel and initrd of ``image`` (None for what it does not have)."""
        props = image.properties or {}
        kernel = props.get("kernel")
        initrd = props.get("initrd")
        return (self._fetch(image, "kernel", kernel) if kernel else None,
                self._fetch(image, "initrd", initrd) if initrd else None)

    def _fetch(self, image: ImageMeta, role: str, source: str, fmt: str | None = None) -> Path:
        target = self.path_of(image, role)
        if target.exists():
            return target
        source = str(self.check_source(image, role, source))
        self.directory.mkdir(parents=True, exist_ok=True)
        with lockutils.lock(f"virtsdk-imagecache-{target.name}", external=True,
                            lock_path=str(self.directory / "locks")):
            if target.exists():
                return target
            tmp = target.with_name(target.name + ".part")
            try:
                if fmt and fmt != disk.RAW:
                    disk.convert(source, fmt, tmp, disk.RAW)
                else:
                    processutils.execute("cp", "--sparse=always", source, str(tmp))
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return target
