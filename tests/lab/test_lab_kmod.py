"""Kernel module ordering from the modules' own modinfo (pure, fabricated .ko files)."""

import pytest
from virtsdk_lab.errors import GuestImageError
from virtsdk_lab.guest import kmod


def _ko(root, rel, depends):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF junk\x00license=GPL\x00depends=" + depends.encode()
                     + b"\x00vermagic=6.1\x00")
    return path


@pytest.fixture
def modules(tmp_path):
    _ko(tmp_path, "drivers/virtio/virtio_ring.ko", "")
    _ko(tmp_path, "drivers/virtio/virtio.ko", "virtio_ring")
    _ko(tmp_path, "drivers/virtio/virtio_pci.ko", "virtio,virtio_ring,virtio-pci-legacy-dev")
    _ko(tmp_path, "drivers/virtio/virtio_pci_legacy_dev.ko", "")
    _ko(tmp_path, "drivers/block/virtio_blk.ko", "virtio,virtio_ring")
    _ko(tmp_path, "drivers/input/evdev.ko", "")
    return kmod.index_modules(tmp_path)


def test_dependencies_come_first_and_only_once(modules):
    order = [p.name for p in kmod.load_order(["virtio_blk", "virtio_pci", "evdev"], modules)]
    assert order == ["virtio_ring.ko", "virtio.ko", "virtio_blk.ko",
                     "virtio_pci_legacy_dev.ko", "virtio_pci.ko", "evdev.ko"]


def test_dash_and_underscore_names_are_the_same_module(modules):
    assert kmod.module_depends(modules["virtio_pci"])[-1] == "virtio_pci_legacy_dev"
    assert [p.name for p in kmod.load_order(["virtio-ring"], modules)] == ["virtio_ring.ko"]


def test_missing_wanted_module_is_an_error(modules):
    with pytest.raises(GuestImageError, match="'virtio_scsi' not found"):
        kmod.load_order(["virtio_scsi"], modules)


def test_dependency_cycle_is_an_error(tmp_path):
    _ko(tmp_path, "a.ko", "b")
    _ko(tmp_path, "b.ko", "a")
    with pytest.raises(GuestImageError, match="cycle"):
        kmod.load_order(["a"], kmod.index_modules(tmp_path))


def test_empty_module_tree_is_an_error(tmp_path):
    with pytest.raises(GuestImageError, match="no kernel modules"):
        kmod.index_modules(tmp_path)
