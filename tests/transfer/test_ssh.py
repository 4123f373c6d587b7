"""``rsync`` and ``scp`` transports against a throw-away sshd on 127.0.0.1."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.transfer.conftest import MiB, assert_as_sparse, make_sparse, rnd, same_content
from tests.transfer.sshd_fixture import running_sshd
from virtsdk.exceptions import DiskTransferError, Invalid, TransferIntegrityError
from virtsdk.transfer.base import HostEndpoint, SendFile, load_transport

pytestmark = pytest.mark.skipif(not (shutil.which("rsync") and os.path.exists("/usr/sbin/sshd")
                                     and shutil.which("scp")),
                                reason="rsync, scp or sshd is not installed")


@pytest.fixture(scope="module")
def sshd():
    with running_sshd() as server:
        yield server


@pytest.fixture
def ssh_conf(conf, sshd):
    load_transport("scp", conf)  # registers [transport_ssh]
    conf.set_override("port", sshd.port, group="transport_ssh")
    conf.set_override("key_file", sshd.client_key, group="transport_ssh")
    conf.set_override("user", "root", group="transport_ssh")
    return conf


@pytest.fixture(scope="module")
def sparse_disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("sshsrc")
    return make_sparse(str(root / "disk"), 64 * MiB, [(MiB, rnd(2 * MiB)), (60 * MiB, rnd(5000))])


@pytest.mark.parametrize("name", ["rsync", "scp"])
def test_round_trip(ssh_conf, tmp_path, sparse_disk, name):
    t = load_transport(name, ssh_conf)
    ticket = t.prepare_receive(str(tmp_path / "dest"), HostEndpoint("127.0.0.1"))
    progress = []
    result = t.send([SendFile(sparse_disk, "disks/root.img")], ticket, progress.append)
    received = t.finish_receive(ticket, timeout=30)
    assert same_content(sparse_disk, received[0].path)
    assert received[0].digest == result.files[0].digest
    if name == "rsync":
        assert_as_sparse(sparse_disk, received[0].path)
    else:  # scp writes every byte: what Nova's default costs
        assert os.stat(received[0].path).st_blocks * 512 >= 64 * MiB
    assert [p.bytes_done for p in progress][-1] == 64 * MiB
    assert os.listdir(tmp_path / "dest") == ["disks"]


def test_finish_refuses_a_tampered_file(ssh_conf, tmp_path, sparse_disk):
    t = load_transport("rsync", ssh_conf)
    ticket = t.prepare_receive(str(tmp_path / "dest"), HostEndpoint("127.0.0.1"))
    t.send([SendFile(sparse_disk, "disk")], ticket)
    part = next(p for p in (tmp_path / "dest").rglob("0.part"))
    with open(part, "r+b") as fh:
        fh.seek(MiB)
        fh.write(b"tampered")
    with pytest.raises(TransferIntegrityError):
        t.finish_receive(ticket, timeout=30)
    t.cancel_receive(ticket)
    assert os.listdir(tmp_path / "dest") == []


def test_existing_file_is_not_replaced(ssh_conf, tmp_path, sparse_disk):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "disk").write_bytes(b"precious")
    t = load_transport("scp", ssh_conf)
    ticket = t.prepare_receive(str(dest), HostEndpoint("127.0.0.1"))
    t.send([SendFile(sparse_disk, "disk")], ticket)
    with pytest.raises(DiskTransferError, match="already exists"):
        t.finish_receive(ticket, timeout=30)
    t.cancel_receive(ticket)
    assert (dest / "disk").read_bytes() == b"precious"


def test_bad_key_gives_a_clear_error(ssh_conf, tmp_path, sparse_disk):
    ssh_conf.set_override("key_file", "/nonexistent/key", group="transport_ssh")
    t = load_transport("scp", ssh_conf)
    ticket = t.prepare_receive(str(tmp_path / "dest"), HostEndpoint("127.0.0.1"))
    with pytest.raises(DiskTransferError, match="scp failed"):
        t.send([SendFile(sparse_disk, "disk")], ticket)
    t.cancel_receive(ticket)


def test_unusual_remote_paths_refused(ssh_conf, tmp_path):
    t = load_transport("rsync", ssh_conf)
    with pytest.raises(Invalid):
        t.prepare_receive(str(tmp_path / "dest dir;rm"), HostEndpoint("127.0.0.1"))
