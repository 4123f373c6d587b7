"""Instance paths stay inside the instances directory, whatever another host sends."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from virtsdk_libvirt.paths import InstancePaths, checked_uuid

from virtsdk.exceptions import UnsafePath
from virtsdk.objects import Flavor, Instance


@pytest.fixture
def paths(tmp_path: Path) -> InstancePaths:
    return InstancePaths(str(tmp_path / "instances"))


@pytest.fixture
def instance() -> Instance:
    return Instance(name="vm", flavor=Flavor("small", 256, 1, 1))


def test_layout(paths: InstancePaths, instance: Instance) -> None:
    root = paths.root
    assert paths.instance_dir(instance) == root / instance.uuid
    assert paths.resize_dir(instance) == root / f"{instance.uuid}_resize"
    assert paths.disk(instance, "disk") == root / instance.uuid / "disk"
    assert paths.console_log(instance) == root / instance.uuid / "console.log"
    assert paths.image_cache == root / "_base"


@pytest.mark.parametrize("bad", ["../../etc", "/etc", "", "x" * 36, "a/b"])
def test_instance_uuid_must_be_a_uuid(paths: InstancePaths, bad: str) -> None:
    with pytest.raises(UnsafePath):
        paths.instance_dir(bad)
    with pytest.raises(UnsafePath):
        checked_uuid(bad)


@pytest.mark.parametrize("name", ["../disk", "/etc/passwd", "sub/disk", "..", ".", "a\x00b"])
def test_received_names_cannot_escape(paths: InstancePaths, instance: Instance,
                                      name: str) -> None:
    inst_dir = paths.instance_dir(instance)
    inst_dir.mkdir(parents=True)
    with pytest.raises(UnsafePath):
        paths.received(inst_dir, name)


def test_received_symlink_escape_is_refused(paths: InstancePaths, instance: Instance,
                                            tmp_path: Path) -> None:
    inst_dir = paths.instance_dir(instance)
    inst_dir.mkdir(parents=True)
    os.symlink(tmp_path / "outside", inst_dir / "disk")
    with pytest.raises(UnsafePath):
        paths.received(inst_dir, "disk")


def test_received_directory_must_be_inside_the_root(paths: InstancePaths,
                                                    tmp_path: Path) -> None:
    with pytest.raises(UnsafePath):
        paths.received(tmp_path, "disk")


def test_received_plain_name_is_accepted(paths: InstancePaths, instance: Instance) -> None:
    inst_dir = paths.instance_dir(instance)
    inst_dir.mkdir(parents=True)
    assert paths.received(inst_dir, "disk.local") == inst_dir / "disk.local"


def test_uuid_is_canonicalised(paths: InstancePaths) -> None:
    raw = uuid.uuid4()
    assert paths.instance_dir(raw.hex).name == str(raw)
