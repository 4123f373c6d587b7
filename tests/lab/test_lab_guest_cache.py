"""Guest image cache: recipe keys and pruning (pure, no build)."""

import os
import time
from pathlib import Path

import pytest
from virtsdk_lab.guest import image


def _entry(cache, key, age_s):
    entry = cache / key
    entry.mkdir()
    for name in ("manifest.json", "vmlinuz", "initrd.img"):
        (entry / name).write_text("x")
        past = time.time() - age_s
        os.utime(entry / name, (past, past))
    return entry


def test_prune_removes_only_old_images_of_other_recipes(tmp_path):
    _entry(tmp_path, "current", age_s=30 * 86400)
    _entry(tmp_path, "old", age_s=30 * 86400)
    _entry(tmp_path, "recent", age_s=60)
    (tmp_path / "not-an-image").mkdir()
    assert image.prune(tmp_path, keep="current") == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "not-an-image", "recent"]


def test_recipe_key_changes_with_every_ingredient(tmp_path, monkeypatch):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"static busybox v1")
    base = image.recipe_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", busybox)
    assert base == image.recipe_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", busybox)
    assert base != image.recipe_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-3", busybox)
    assert base != image.recipe_key("linux-image-6.1.0-57-cloud-amd64", "6.1.192-2", busybox)
    monkeypatch.setattr(image, "INIT_SCRIPT", image.INIT_SCRIPT + "\n# changed\n")
    assert base != image.recipe_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", busybox)
    monkeypatch.undo()
    busybox.write_bytes(b"static busybox v2")
    assert base != image.recipe_key("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2", busybox)


def test_cmdline_options_and_bad_marker():
    img = image.GuestImage(kernel=Path("/k"), initrd=Path("/i"), key="k",
                           kernel_package="p", kernel_version="v")
    line = img.cmdline(dirty_kbps=4096, dirty_mib=16, memcheck_mib=4, marker="tok_1")
    assert line.startswith("console=ttyS0 ")
    for part in ("vsdk.dirty_kbps=4096", "vsdk.dirty_mib=16", "vsdk.memcheck_mib=4",
                 "vsdk.marker=tok_1"):
        assert part in line.split()
    assert "vsdk.dirty_kbps" not in img.cmdline()
    with pytest.raises(ValueError, match="marker"):
        img.cmdline(marker="has space")
