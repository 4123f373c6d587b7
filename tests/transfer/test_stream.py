"""The ``stream`` transport end to end on 127.0.0.1 (receiver and sender on this
machine, empty exec_prefix): correctness, refusals, resume, TLS, compression."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.transfer.conftest import (
    LOCALHOST,
    MiB,
    assert_as_sparse,
    authenticate,
    make_sparse,
    offer,
    rnd,
    same_content,
)
from virtsdk.exceptions import DiskTransferError, TransferAuthError, TransferIntegrityError
from virtsdk.transfer import protocol as P
from virtsdk.transfer import stream as stream_mod
from virtsdk.transfer.base import SendFile, choose_transport
from virtsdk.transfer.extents import file_digest
from virtsdk.transfer.local import LocalTransport
from virtsdk.transfer.stream import StreamTransport

EP = LOCALHOST


@pytest.fixture
def transport(stream_transport):
    return stream_transport


@pytest.fixture(scope="module")
def disk64(tmp_path_factory) -> str:
    """64 MiB of random data in 4 extents of a 256 MiB sparse file."""
    root = tmp_path_factory.mktemp("disk64")
    return make_sparse(str(root / "disk"), 256 * MiB,
                       [(i * 64 * MiB + 4096, rnd(16 * MiB)) for i in range(4)])


def _receiver_alive(ticket) -> bool:
    proc = stream_mod._RECEIVERS.get(ticket["transfer_id"])
    return proc is not None and proc.poll() is None


def test_odd_files_round_trip(transport, tmp_path, odd_files):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    files = [SendFile(path, f"disks/{name}") for name, path in odd_files.items()]
    seen = []
    result = transport.send(files, ticket, progress=seen.append)
    received = transport.finish_receive(ticket, timeout=60)
    assert [r.name for r in received] == [f.name for f in files]
    for f, r, sent in zip(files, received, result.files, strict=True):
        assert same_content(f.path, r.path), f.name
        assert_as_sparse(f.path, r.path)
        assert sent.digest == r.digest == file_digest(f.path, "xxh3")
    total = sum(os.path.getsize(f.path) for f in files)
    done = [p.bytes_done for p in seen]
    assert done == sorted(done) and done[-1] == total
    assert all(p.bytes_total == total for p in seen)
    # only data travelled: the 5 GiB file cost a few KiB
    assert result.bytes_sent <= sum(os.stat(f.path).st_blocks * 512 for f in files)
    assert sorted(os.listdir(tmp_path / "dest")) == ["disks"]  # no state left behind
    assert not _receiver_alive(ticket)


def test_token_is_single_use(transport, tmp_path, disk64):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    transport.send([SendFile(disk64, "disk")], ticket)
    transport.finish_receive(ticket, timeout=60)
    with pytest.raises(DiskTransferError):
        transport.send([SendFile(disk64, "disk2")], ticket)


def test_wrong_token_rejected_and_receiver_keeps_waiting(transport, tmp_path, disk64):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    forged = dict(ticket, token="A" * 43)
    with pytest.raises(TransferAuthError):
        transport.send([SendFile(disk64, "disk")], forged)
    assert os.listdir(tmp_path / "dest") == [n for n in os.listdir(tmp_path / "dest")
                                             if n.startswith(".virtsdk-")]
    transport.send([SendFile(disk64, "disk")], ticket)
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(disk64, received[0].path)


def _raw_hello(ticket, files) -> dict:
    """Authenticate, offer ``files``; the receiver's answer to the offer."""
    with socket.create_connection((ticket["address"], ticket["port"]), timeout=10) as sock:
        assert authenticate(sock, ticket)["ok"] is True
        return offer(sock, files)


@pytest.mark.parametrize("name", ["../escape", "/etc/evil", "a/../../b", ".virtsdk-transfer-x",
                                  "link/disk"])
def test_receiver_rejects_unsafe_names(transport, tmp_path, name):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(tmp_path)
    ticket = transport.prepare_receive(str(dest))
    reply = _raw_hello(ticket, [{"name": name, "size": 10}])
    assert reply["ok"] is False and reply["kind"] == "invalid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
    assert _receiver_alive(ticket)


def test_existing_destination_file_is_not_overwritten(transport, tmp_path, disk64):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "disk").write_bytes(b"precious")
    ticket = transport.prepare_receive(str(dest))
    with pytest.raises(DiskTransferError, match="already exists"):
        transport.send([SendFile(disk64, "disk")], ticket)
    transport.cancel_receive(ticket)
    assert (dest / "disk").read_bytes() == b"precious"
    assert os.listdir(dest) == ["disk"]


class _CorruptingProxy:
    """Forwards one connection to the receiver, flipping one byte of the sender's
    stream at ``position`` (inside the first data run)."""

    def __init__(self, target: tuple[str, int], position: int) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target = target
        self.position = position
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.server.accept()
        upstream = socket.create_connection(self.target)

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=back, daemon=True).start()
        seen = 0
        try:
            while data := client.recv(65536):
                if seen <= self.position < seen + len(data):
                    buf = bytearray(data)
                    buf[self.position - seen] ^= 0xFF
                    data = bytes(buf)
                seen += len(data)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()


@pytest.mark.parametrize("shape", ["big_runs", "batched_small_runs"])
def test_corrupted_extent_rejected_then_resent(transport, tmp_path, disk64, odd_files, shape):
    src = disk64 if shape == "big_runs" else odd_files["many_small_extents"]
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    proxy = _CorruptingProxy((ticket["address"], ticket["port"]), position=MiB + 777)
    with pytest.raises(TransferIntegrityError, match="checksum mismatch"):
        transport.send([SendFile(src, "disk")], dict(ticket, port=proxy.port))
    # the corrupt frame (the first one) was not written: nothing is allocated yet
    assert os.stat(tmp_path / "dest" / "disk").st_blocks == 0
    result = transport.send([SendFile(src, "disk")], ticket)  # straight, no proxy
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(src, received[0].path)
    assert result.files[0].digest == received[0].digest


_KILLED_SENDER = """
import json, os, signal, sys
from oslo_config import cfg
from virtsdk.transfer.base import SendFile
from virtsdk.transfer.stream import StreamTransport
ticket = json.loads(sys.argv[1])
conf = cfg.ConfigOpts(); conf([])
t = StreamTransport(conf)
opts = t.sender_options()
opts.compression = "off"
opts.on_wire = lambda n: os.kill(os.getpid(), signal.SIGKILL) if n >= int(sys.argv[3]) else None
t.send([SendFile(sys.argv[2], "disk")], ticket, options=opts)
"""


def test_interrupted_transfer_resumes_and_source_is_untouched(transport, tmp_path, disk64):
    before = (os.stat(disk64).st_mtime_ns, file_digest(disk64, "sha256"))
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    proc = subprocess.run([sys.executable, "-c", _KILLED_SENDER, json.dumps(ticket), disk64,
                           str(32 * MiB)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert _receiver_alive(ticket)
    result = transport.send([SendFile(disk64, "disk")], ticket)
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(disk64, received[0].path)
    assert result.resumed_bytes >= 16 * MiB
    assert result.bytes_on_wire <= 64 * MiB - result.resumed_bytes + MiB
    assert (os.stat(disk64).st_mtime_ns, file_digest(disk64, "sha256")) == before


def test_dropped_connection_is_retried_automatically(transport, conf, tmp_path, disk64):
    conf.set_override("retries", 2, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    opts = transport.sender_options()
    drops = []

    def drop_once(n: int) -> None:
        if n >= 20 * MiB and not drops:
            drops.append(n)
            raise ConnectionResetError("simulated drop")

    opts.on_wire = drop_once
    result = transport.send([SendFile(disk64, "disk")], ticket, options=opts)
    received = transport.finish_receive(ticket, timeout=60)
    assert drops and result.resumed_bytes > 0
    assert same_content(disk64, received[0].path)


def test_cancel_stops_the_receiver_and_removes_only_its_files(transport, tmp_path, disk64):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "console.log").write_text("keep")
    ticket = transport.prepare_receive(str(dest))
    reply = _raw_hello(ticket, [{"name": "disk", "size": 123},  # creates the files
                                {"name": "sub/dir/disk", "size": 5}])
    assert reply["ok"] is True
    assert (dest / "disk").exists() and (dest / "sub" / "dir" / "disk").exists()
    transport.cancel_receive(ticket)
    transport.cancel_receive(ticket)
    assert not _receiver_alive(ticket)
    assert sorted(os.listdir(dest)) == ["console.log"]


def test_receiver_gives_up_without_a_sender(transport, conf, tmp_path):
    conf.set_override("receiver_idle_timeout", 1, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    with pytest.raises(DiskTransferError, match="no sender|exited"):
        transport.finish_receive(ticket, timeout=60)
    transport.cancel_receive(ticket)
    assert os.listdir(tmp_path / "dest") == []


@pytest.mark.parametrize("mode", ["on", "off", "auto"])
def test_compression_round_trip(transport, conf, tmp_path, mode):
    text = b"".join(b"line %d of a very compressible disk\n" % i for i in range(200000))
    src = make_sparse(str(tmp_path / "text"), 32 * MiB, [(MiB, text)])
    conf.set_override("compression", mode, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    result = transport.send([SendFile(src, "disk")], ticket)
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(src, received[0].path)
    if mode == "on":
        assert result.bytes_on_wire < result.bytes_sent / 3
    elif mode == "auto":  # the first run is compressed before any link rate is known
        assert result.bytes_on_wire < result.bytes_sent
    else:
        assert result.bytes_on_wire >= result.bytes_sent


def test_tls_round_trip_and_verification(transport, conf, tmp_path, disk64):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    for name, value in (("tls", True), ("tls_cert", cert), ("tls_key", key), ("tls_ca", cert)):
        conf.set_override(name, value, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    assert ticket["tls"] is True
    with pytest.raises(OSError):  # a plain-TCP peer gets no answer it understands
        _raw_hello(ticket, [{"name": "disk", "size": 1}])
    untrusted = transport.sender_options()
    untrusted.tls = P.client_tls_context(None)  # system CAs: our self-signed cert fails
    with pytest.raises(DiskTransferError):
        transport.send([SendFile(disk64, "disk")], ticket, options=untrusted)
    transport.send([SendFile(disk64, "disk")], ticket)
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(disk64, received[0].path)


def test_source_on_shared_storage_copies_locally(transport, conf, tmp_path, disk64):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    name = choose_transport(conf, ticket)
    assert name == "local"  # same machine: the probe is visible
    LocalTransport(conf).send([SendFile(disk64, "disk")], ticket)
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(disk64, received[0].path)
    assert not _receiver_alive(ticket)
    assert os.listdir(tmp_path / "dest") == ["disk"]


def test_restarted_receiver_resumes_from_its_journal(transport, tmp_path, disk64):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    proc = subprocess.run([sys.executable, "-c", _KILLED_SENDER, json.dumps(ticket), disk64,
                           str(32 * MiB)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    receiver = stream_mod._RECEIVERS[ticket["transfer_id"]]
    receiver.kill()  # the destination service died with its receiver
    receiver.wait()
    with open(tmp_path / "dest" / "disk", "r+b") as fh:  # a journaled run rots on disk
        fh.seek(8192)
        fh.write(b"rot")
    ticket2 = transport.resume_receive(ticket, EP)
    assert ticket2["token"] == ticket["token"] and _receiver_alive(ticket2)
    result = transport.send([SendFile(disk64, "disk")], ticket2)
    received = transport.finish_receive(ticket2, timeout=60)
    assert same_content(disk64, received[0].path)  # the rotten run was sent again
    assert 0 < result.resumed_bytes < 32 * MiB


def test_receiver_that_cannot_start_leaves_nothing(conf, tmp_path):
    t = StreamTransport(conf)
    conf.set_override("python", "/bin/false", group="transport_stream")
    with pytest.raises(DiskTransferError, match="did not start"):
        t.prepare_receive(str(tmp_path / "dest"), EP)
    assert os.listdir(tmp_path / "dest") == []
    assert not stream_mod._RECEIVERS


def test_missing_source_file_is_a_clear_error(transport, tmp_path, disk64):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    with pytest.raises(DiskTransferError, match="cannot read"):
        transport.send([SendFile(disk64, "a"), SendFile(str(tmp_path / "nope"), "b")], ticket)
    assert _receiver_alive(ticket)
    transport.cancel_receive(ticket)
