"""The ``local`` transport: every copy method, odd files, refusals and cancel."""

from __future__ import annotations

import os

import pytest

from tests.transfer.conftest import MiB, assert_as_sparse, make_sparse, rnd, same_content
from virtsdk.exceptions import DiskTransferError, TransferIntegrityError
from virtsdk.transfer.base import HostEndpoint, SendFile
from virtsdk.transfer.extents import file_digest
from virtsdk.transfer.local import LocalTransport

EP = HostEndpoint("127.0.0.1")


@pytest.mark.parametrize("method,checksum", [("auto", "none"), ("copy_range", "crc32"),
                                             ("sendfile", "xxh3"), ("userspace", "sha256")])
def test_odd_files_copied_exactly_and_sparse(conf, tmp_path, odd_files, method, checksum):
    t = LocalTransport(conf)
    conf.set_override("method", method, group="transport_local")
    conf.set_override("checksum", checksum, group="transport_local")
    ticket = t.prepare_receive(str(tmp_path / "dest"), EP)
    files = [SendFile(path, f"disks/{name}.img") for name, path in odd_files.items()]
    seen = []
    result = t.send(files, ticket, progress=seen.append)
    received = t.finish_receive(ticket, timeout=5)
    assert [r.name for r in received] == [f.name for f in files]
    for f, r, sent in zip(files, received, result.files, strict=True):
        assert same_content(f.path, r.path), f.name
        assert_as_sparse(f.path, r.path)
        if checksum != "none":
            assert sent.digest == file_digest(f.path, checksum)
    done = [p.bytes_done for p in seen]
    assert done == sorted(done) and done[-1] == sum(os.path.getsize(f.path) for f in files)
    assert sorted(os.listdir(tmp_path / "dest" / "disks")) == sorted(
        os.path.basename(f.name) for f in files)


def test_existing_destination_is_never_overwritten(conf, tmp_path):
    src = make_sparse(str(tmp_path / "disk"), MiB, [(0, rnd(4096))])
    t = LocalTransport(conf)
    ticket = t.prepare_receive(str(tmp_path), EP)  # dest_dir == source dir
    before = open(src, "rb").read()
    with pytest.raises(DiskTransferError, match="already exists"):
        t.send([SendFile(src, "disk")], ticket)
    assert open(src, "rb").read() == before


def test_failed_send_removes_what_it_created(conf, tmp_path):
    good = make_sparse(str(tmp_path / "good"), MiB, [(0, rnd(4096))])
    t = LocalTransport(conf)
    ticket = t.prepare_receive(str(tmp_path / "dest"), EP)
    with pytest.raises(DiskTransferError, match="cannot read"):
        t.send([SendFile(good, "a"), SendFile(str(tmp_path / "missing"), "b")], ticket)
    assert os.listdir(tmp_path / "dest") == []
    assert os.path.exists(good)


def test_cancel_removes_only_the_transfer_files(conf, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "console.log").write_text("keep me")
    src = make_sparse(str(tmp_path / "disk"), MiB, [(0, rnd(4096))])
    t = LocalTransport(conf)
    ticket = t.prepare_receive(str(dest), EP)
    (dest / "kept").mkdir()
    t.send([SendFile(src, "disk"), SendFile(src, "kept/disk"), SendFile(src, "new/a/disk")],
           ticket)
    t.cancel_receive(ticket)
    t.cancel_receive(ticket)  # idempotent
    assert sorted(os.listdir(dest)) == ["console.log", "kept"]
    assert os.listdir(dest / "kept") == []


def test_finish_detects_a_corrupted_copy(conf, tmp_path):
    t = LocalTransport(conf)
    conf.set_override("checksum", "crc32", group="transport_local")
    src = make_sparse(str(tmp_path / "disk"), MiB, [(0, rnd(8192))])
    ticket = t.prepare_receive(str(tmp_path / "dest"), EP)
    t.send([SendFile(src, "disk")], ticket)
    with open(tmp_path / "dest" / "disk", "r+b") as fh:
        fh.write(b"corrupt")
    with pytest.raises(TransferIntegrityError):
        t.finish_receive(ticket, timeout=5)


def test_finish_times_out_without_a_sender(conf, tmp_path):
    t = LocalTransport(conf)
    ticket = t.prepare_receive(str(tmp_path / "dest"), EP)
    with pytest.raises(DiskTransferError, match="did not complete"):
        t.finish_receive(ticket, timeout=0.1)
