"""qcow2 overlays: only the overlay travels; the backing file is reported and found."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.transfer.conftest import MiB, make_sparse, rnd
from virtsdk.transfer import images
from virtsdk.transfer.base import HostEndpoint, SendFile
from virtsdk.transfer.stream import StreamTransport

pytestmark = pytest.mark.skipif(not shutil.which("qemu-img") or not shutil.which("qemu-io"),
                                reason="qemu-utils is not installed")


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    root = tmp_path_factory.mktemp("qcow2")
    base = make_sparse(str(root / "base.raw"), 64 * MiB, [(0, rnd(8 * MiB))])
    ovl = str(root / "overlay.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", ovl],
                   check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0xab 1M 2M", "-c", "write -P 0xcd 40M 64k",
                    ovl], check=True, capture_output=True)
    return base, ovl


def test_format_and_backing_file(overlay):
    base, ovl = overlay
    assert images.image_format(base) == "raw"
    assert images.image_format(ovl) == "qcow2"
    assert images.backing_file_of(base) is None
    assert images.backing_file_of(ovl) == base
    info = images.image_info(ovl)
    assert (info.format, info.backing_file, info.virtual_size) == ("qcow2", base, 64 * MiB)


def test_overlay_sent_alone_and_backing_reported(conf, tmp_path, overlay):
    base, ovl = overlay
    t = StreamTransport(conf)
    dest = tmp_path / "dest"
    ticket = t.prepare_receive(str(dest), HostEndpoint("127.0.0.1"))
    result = t.send([SendFile(ovl, "disk")], ticket)
    received = t.finish_receive(ticket, timeout=60)
    sent = result.files[0]
    assert sent.backing_file == base
    assert sent.bytes_sent <= os.stat(ovl).st_blocks * 512 < 8 * MiB  # not the 8 MiB base
    path = received[0].path
    # the destination has no copy of the base under its name: the caller must fetch it
    missing = images.missing_backing_files([(path, "/elsewhere/" + os.path.basename(base))],
                                           [str(tmp_path / "cache")])
    assert missing == ["/elsewhere/base.raw"]
    (tmp_path / "cache").mkdir()
    shutil.copy(base, tmp_path / "cache" / "base.raw")
    assert images.missing_backing_files([(path, "/elsewhere/base.raw")],
                                        [str(tmp_path / "cache")]) == []
    assert images.missing_backing_files([(path, sent.backing_file)]) == []  # same machine
    # guest-visible content identical to the source overlay (through the same base)
    subprocess.run(["qemu-img", "compare", "-q", "-f", "qcow2", "-F", "qcow2", ovl, path],
                   check=True)


def test_relative_backing_resolved_next_to_overlay(tmp_path):
    assert images.resolve_backing("/a/b/disk", "../base") == "/a/base"
    assert images.resolve_backing("/a/b/disk", "/abs/base") == "/abs/base"
