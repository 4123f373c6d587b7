"""Disk files with the real qemu-img: overlays, growth, inspection of untrusted
images, the image cache and the no-shrink rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from oslo_concurrency import processutils
from virtsdk_libvirt import disk
from virtsdk_libvirt.imagecache import ImageCache, ImageUnavailable
from virtsdk_libvirt.paths import InstancePaths
from virtsdk_libvirt.storage import (
    GiB,
    LibvirtLocalDisks,
    MiB,
    check_no_shrink,
    supports_direct_io,
)

from virtsdk.exceptions import Invalid, ResizeShrinkNotAllowed
from virtsdk.objects import DiskInfo, Flavor, ImageMeta, Instance


@pytest.fixture
def base_image(tmp_path: Path) -> Path:
    """A 64 MiB raw 'image' with recognisable data at the start."""
    path = tmp_path / "image.raw"
    with open(path, "wb") as fh:
        fh.truncate(64 * MiB)
        fh.write(b"BASE-IMAGE-DATA" * 100)
    return path


def test_overlay_info_grow_and_rebase(tmp_path: Path, base_image: Path) -> None:
    overlay = tmp_path / "disk"
    disk.create_overlay(overlay, base_image, disk.RAW, 128 * MiB)
    info = disk.info(overlay)
    assert info.format == "qcow2"
    assert info.virtual_size == 128 * MiB
    assert info.backing_file == str(base_image)
    disk.grow(overlay, "qcow2", 256 * MiB)
    assert disk.info(overlay).virtual_size == 256 * MiB
    with pytest.raises(Invalid, match="shrink"):
        disk.grow(overlay, "qcow2", 64 * MiB)
    moved = tmp_path / "moved-base"
    os.rename(base_image, moved)
    disk.rebase_in_place(overlay, moved, disk.RAW)
    assert disk.info(overlay).backing_file == str(moved)
    # the overlay still reads the base's data through the new backing path
    out, _ = processutils.execute("qemu-img", "compare", "-f", "qcow2", "-F", "raw",
                                  str(overlay), str(moved))
    assert "Images are identical" in out


def test_blank_disks_are_sparse(tmp_path: Path) -> None:
    raw = tmp_path / "blank.raw"
    disk.create_blank(raw, "raw", GiB)
    assert disk.info(raw).virtual_size == GiB
    assert disk.allocated_bytes(raw) < MiB
    with pytest.raises(Invalid):
        disk.create_blank(tmp_path / "x", "vmdk", GiB)


def test_external_data_file_image_is_refused(tmp_path: Path) -> None:
    """A qcow2 whose data lives in another file (e.g. /etc/shadow) must not be used."""
    target = tmp_path / "victim"
    target.write_bytes(b"secret" * 100)
    crafted = tmp_path / "crafted.qcow2"
    processutils.execute("qemu-img", "create", "-q", "-f", "qcow2", "-o",
                         f"data_file={target},data_file_raw=on", str(crafted), "1M")
    with pytest.raises(disk.UnsafeImage, match="data file"):
        disk.info(crafted)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    vmdk = tmp_path / "d.vmdk"
    processutils.execute("qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "1M")
    with pytest.raises(disk.UnsafeImage, match="format"):
        disk.info(vmdk)


def test_image_cache_fetches_once(tmp_path: Path, base_image: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    image = ImageMeta(id="img-1", location=str(base_image), disk_format="raw")
    first = cache.base_disk(image)
    assert first is not None and first.read_bytes()[:15] == b"BASE-IMAGE-DATA"
    mtime = first.stat().st_mtime_ns
    assert cache.base_disk(image) == first
    assert first.stat().st_mtime_ns == mtime
    assert cache.base_disk(ImageMeta(id="no-disk")) is None
    with pytest.raises(ImageUnavailable):
        cache.base_disk(ImageMeta(id="gone", location=str(tmp_path / "missing")))


def test_image_cache_converts_qcow2_images_to_raw(tmp_path: Path, base_image: Path) -> None:
    q = tmp_path / "image.qcow2"
    disk.convert(base_image, "raw", q, "qcow2")
    cached = ImageCache(tmp_path / "cache").base_disk(
        ImageMeta(id="img-q", location=str(q), disk_format="qcow2"))
    assert cached is not None and disk.info(cached).format == "raw"


def test_kernel_and_initrd_are_cached(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd").write_bytes(b"initrd")
    cache = ImageCache(tmp_path / "cache")
    image = ImageMeta(id="k", properties={"kernel": str(tmp_path / "vmlinuz"),
                                          "initrd": str(tmp_path / "initrd")})
    kernel, initrd = cache.kernel_and_initrd(image)
    assert kernel is not None and kernel.read_bytes() == b"kernel"
    assert initrd is not None and initrd.read_bytes() == b"initrd"
    assert cache.kernel_and_initrd(ImageMeta(id="none")) == (None, None)


@pytest.mark.parametrize("images_type", ["qcow2", "raw"])
def test_local_disks_create_describe_and_grow(tmp_path: Path, base_image: Path,
                                              images_type: str) -> None:
    paths = InstancePaths(str(tmp_path / "instances"))
    local = LibvirtLocalDisks(paths, ImageCache(paths.image_cache), images_type)
    inst = Instance(name="vm", flavor=Flavor("f", 128, 1, 1, ephemeral_gb=1, swap_mb=16))
    paths.instance_dir(inst).mkdir(parents=True)
    local.create(inst, inst.flavor, ImageMeta(id="img", location=str(base_image)))
    specs = local.specs(inst)
    assert [(s.target, os.path.basename(s.path), s.fmt) for s in specs] == [
        ("vda", "disk", images_type), ("vdb", "disk.local", images_type),
        ("vdc", "disk.swap", "raw")]
    described = local.describe(inst, [(s.target, s.path, s.fmt) for s in specs])
    root = described[0]
    assert root.path == "disk" and root.virt_disk_size == GiB and root.target == "vda"
    if images_type == "qcow2":
        assert root.backing_file == paths.image_cache.joinpath(
            local.cache.cache_name(ImageMeta(id="img"), "disk")).name
        assert root.over_committed_disk_size > 0
    else:
        assert root.backing_file is None
    local.grow_to_flavor(paths.instance_dir(inst), Flavor("big", 128, 1, 2, ephemeral_gb=2))
    grown = {s.path: disk.info(s.path).virtual_size for s in local.specs(inst)}
    assert grown[str(paths.disk(inst, "disk"))] == 2 * GiB
    assert grown[str(paths.disk(inst, "disk.local"))] == 2 * GiB


def test_resize_can_add_ephemeral_and_swap(tmp_path: Path) -> None:
    paths = InstancePaths(str(tmp_path / "instances"))
    local = LibvirtLocalDisks(paths, ImageCache(paths.image_cache), "qcow2")
    inst = Instance(name="vm", flavor=Flavor("f", 128, 1, 1))
    paths.instance_dir(inst).mkdir(parents=True)
    local.create(inst, inst.flavor, ImageMeta(id="kernel-only"))
    bigger = Flavor("g", 128, 1, 1, ephemeral_gb=1, swap_mb=8)
    local.ensure_ephemeral(inst, bigger)
    local.ensure_swap(inst, bigger)
    assert [(s.target, s.fmt) for s in local.specs(inst)] == [
        ("vda", "qcow2"), ("vdb", "qcow2"), ("vdc", "raw")]
    assert disk.info(paths.disk(inst, "disk.local")).virtual_size == GiB


def test_root_disk_without_image_is_blank(tmp_path: Path) -> None:
    paths = InstancePaths(str(tmp_path / "instances"))
    local = LibvirtLocalDisks(paths, ImageCache(paths.image_cache), "qcow2")
    inst = Instance(name="vm", flavor=Flavor("f", 128, 1, 1))
    paths.instance_dir(inst).mkdir(parents=True)
    local.create(inst, inst.flavor, ImageMeta(id="kernel-only"))
    info = disk.info(paths.disk(inst, "disk"))
    assert info.virtual_size == GiB and info.backing_file is None


def _disk(name: str, size: int) -> DiskInfo:
    return DiskInfo(path=name, type="qcow2", virt_disk_size=size, disk_size=0)


def test_shrinking_is_refused() -> None:
    disks = [_disk("disk", 2 * GiB), _disk("disk.local", GiB)]
    check_no_shrink(disks, Flavor("same", 128, 1, 2, ephemeral_gb=1))
    check_no_shrink(disks, Flavor("bigger", 128, 1, 3, ephemeral_gb=2))
    check_no_shrink(disks, Flavor("image-sized-root", 128, 1, 0, ephemeral_gb=1))
    with pytest.raises(ResizeShrinkNotAllowed, match="disk "):
        check_no_shrink(disks, Flavor("small-root", 128, 1, 1, ephemeral_gb=1))
    with pytest.raises(ResizeShrinkNotAllowed, match="disk.local"):
        check_no_shrink(disks, Flavor("no-ephemeral", 128, 1, 2))


def test_direct_io_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    supports_direct_io(tmp_path)
    assert not list(tmp_path.iterdir())


def test_image_cache_only_reads_from_the_image_directories(tmp_path: Path,
                                                           base_image: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    inside = images / "ok.raw"
    inside.write_bytes(b"ok")
    os.symlink("/etc/hostname", images / "sneaky")
    cache = ImageCache(tmp_path / "cache", [str(images)])
    assert cache.base_disk(ImageMeta(id="in", location=str(inside))) is not None
    for source in (str(base_image), "/etc/passwd", str(images / "sneaky"),
                   str(images / ".." / "image.raw")):
        with pytest.raises(ImageUnavailable, match="outside"):
            cache.base_disk(ImageMeta(id=f"out-{source}", location=source))
    with pytest.raises(ImageUnavailable, match="outside"):
        cache.kernel_and_initrd(ImageMeta(id="k", properties={"kernel": "/boot/../etc/shadow"}))
    assert len(list((tmp_path / "cache").glob("*.disk"))) == 1  # only the allowed one
