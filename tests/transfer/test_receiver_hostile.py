"""The ``stream`` receiver under hostile peers, over real sockets against a real
receiver process: before authentication (nesting, size, slowloris, connection
floods) and after it (malformed values in the offer, the frame headers and the
end-of-file records).  Every test ends with the real sender completing the transfer
the receiver serves: no peer may abort the cold migration behind it."""

from __future__ import annotations

import json
import os
import socket
import struct
import time

import pytest

from tests.transfer.conftest import MiB, authenticate, make_sparse, offer, rnd, same_content
from virtsdk.transfer import protocol as P
from virtsdk.transfer import state as xstate
from virtsdk.transfer import stream as stream_mod
from virtsdk.transfer.base import SendFile
from virtsdk.transfer.extents import CHECKSUMS, DigestBuilder

XXH3, CSIZE = CHECKSUMS["xxh3"]


@pytest.fixture
def transport(stream_transport):
    return stream_transport


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> str:
    """8 MiB of data in two extents of a 32 MiB sparse file."""
    root = tmp_path_factory.mktemp("hostile")
    return make_sparse(str(root / "disk"), 32 * MiB, [(4096, rnd(4 * MiB)),
                                                      (20 * MiB + 512, rnd(4 * MiB))])


def _proc(ticket):
    return stream_mod._RECEIVERS[ticket["transfer_id"]]


def _alive(ticket) -> bool:
    return _proc(ticket).poll() is None


def _status(ticket, field: str) -> int:
    with open(f"/proc/{_proc(ticket).pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def _connect(ticket) -> socket.socket:
    return socket.create_connection((ticket["address"], ticket["port"]), timeout=20)


def _reply(sock) -> dict | None:
    """The receiver's answer, or None when it closed the connection without one."""
    try:
        return P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH)
    except (OSError, P.ProtocolError):
        return None


def _send_raw_hello(ticket, body: bytes, length: int | None = None) -> dict | None:
    with _connect(ticket) as sock:
        sock.sendall(P.MAGIC + struct.pack(">I", len(body) if length is None else length))
        try:
            sock.sendall(body)
        except OSError:
            pass  # the receiver stopped reading: what it answered is what counts
        return _reply(sock)


def _finish_real_transfer(transport, ticket, disk) -> None:
    """The sender the receiver was started for still gets its disk across."""
    assert _alive(ticket)
    transport.send([SendFile(disk, "disk")], ticket)
    received = transport.finish_receive(ticket, timeout=60)
    assert same_content(disk, received[0].path)


def _only_state_in(dest) -> bool:
    return all(n.startswith(".virtsdk-") for n in os.listdir(dest))


# -- before authentication --------------------------------------------------------------


def test_deeply_nested_hello_is_refused_and_the_receiver_survives(transport, tmp_path, disk):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    nested = b'{"token":' + b"[" * 1900 + b"]" * 1900 + b',"transfer_id":"x"}'
    assert len(nested) <= P.MAX_HELLO
    reply = _send_raw_hello(ticket, nested)
    assert reply is not None and reply["ok"] is False and reply["kind"] == "invalid", reply
    assert "nested" in reply["error"]
    deep = b"[" * 200_000 + b"]" * 200_000  # far past the recursion limit, and too large
    reply = _send_raw_hello(ticket, deep)
    assert reply is not None and reply["kind"] == "invalid", reply
    assert _alive(ticket)
    _finish_real_transfer(transport, ticket, disk)


@pytest.mark.parametrize("hello", [
    {"token": {"a": 1}, "transfer_id": "x"},          # not flat
    {"token": ["x"], "transfer_id": "x"},
    {"token": 12345678901234567890, "transfer_id": "x"},  # wrong types
    {"token": None, "transfer_id": None},
    {"token": True, "transfer_id": "x"},
    {"transfer_id": "x"},                             # missing
    {"token": "x", "transfer_id": "x", "files": []},  # more than a hello
    ["token", "x"],
    "token",
])
def test_malformed_hello_gets_a_reply_not_a_crash(transport, tmp_path, hello):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    reply = _send_raw_hello(ticket, json.dumps(hello).encode())
    assert reply is not None and reply["ok"] is False, reply
    assert reply["kind"] in ("invalid", "auth") and "Traceback" not in reply["error"]
    assert _alive(ticket) and _only_state_in(tmp_path / "dest")


def test_huge_hello_is_refused_before_it_is_read(transport, tmp_path, disk):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    before = _status(ticket, "VmRSS")
    # only the length is sent: the answer must not wait for (or buffer) the body
    with _connect(ticket) as sock:
        sock.sendall(P.MAGIC + struct.pack(">I", 60 * MiB))
        reply = _reply(sock)
    assert reply is not None and reply["kind"] == "invalid" and "too large" in reply["error"]
    # and a 60 MiB hello sent in full does not grow the receiver
    body = b'{"token":"' + b"A" * (60 * MiB) + b'","transfer_id":"x"}'
    reply = _send_raw_hello(ticket, body)
    assert reply is None or reply["kind"] == "invalid"
    assert _status(ticket, "VmHWM") < before + 16 * 1024, "the hello was buffered"
    # a hello just over the limit is refused too, however flat
    reply = _send_raw_hello(ticket, json.dumps({"token": "A" * P.MAX_HELLO,
                                                "transfer_id": "x"}).encode())
    assert reply is not None and reply["kind"] == "invalid"
    _finish_real_transfer(transport, ticket, disk)


def test_wrong_token_of_any_length_is_refused(transport, tmp_path, disk):
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    for token in ("", "A", ticket["token"][:-1], ticket["token"] + "A", "\u00e9" * 43):
        forged = dict(ticket, token=token)
        with _connect(ticket) as sock:
            reply = authenticate(sock, forged)
        assert reply["ok"] is False and reply["kind"] in ("auth", "invalid"), token
    with _connect(ticket) as sock:
        reply = authenticate(sock, dict(ticket, transfer_id="0123456789abcdef"))
    assert reply["kind"] == "auth"
    _finish_real_transfer(transport, ticket, disk)


def test_slowloris_handshake_is_cut_at_one_deadline(transport, conf, tmp_path, disk):
    conf.set_override("handshake_timeout", 1.0, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    hello = P.MAGIC + b"\x00\x00\x00\x40" + b'{"token":"' + b"A" * 50
    closed_after = None
    with _connect(ticket) as sock:
        for i, byte in enumerate(hello):  # one byte every quarter of the deadline
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = i
                break
            time.sleep(0.25)
            sock.setblocking(False)
            try:
                if sock.recv(4096) == b"":
                    closed_after = i
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed_after = i
                break
            finally:
                sock.setblocking(True)
    # each byte came well within any per-read timeout; the whole handshake did not
    assert closed_after is not None, "the receiver waited for the whole drip"
    assert closed_after < len(hello) - 1
    _finish_real_transfer(transport, ticket, disk)


def test_connection_flood_neither_blocks_the_sender_nor_grows_the_receiver(
        transport, conf, tmp_path, disk):
    conf.set_override("max_handshakes", 4, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    idle = [_connect(ticket) for _ in range(24)]  # they never say a word
    try:
        for sock in idle[:12]:
            sock.sendall(P.MAGIC[:3])
        # the real sender gets through while they hang on (the deadline is 30 s)
        _finish_real_transfer(transport, ticket, disk)
        dropped = 0
        for sock in idle:
            sock.settimeout(10)
            try:
                if sock.recv(1) == b"":
                    dropped += 1
            except (OSError, TimeoutError):
                dropped += 1
        assert dropped >= 20  # all but the 4 newest were shut down to make room
    finally:
        for sock in idle:
            sock.close()


def test_peer_traffic_does_not_keep_an_unused_receiver_alive(transport, conf, tmp_path):
    conf.set_override("receiver_idle_timeout", 2, group="transport_stream")
    conf.set_override("handshake_timeout", 0.5, group="transport_stream")
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    exited_while_knocking = False
    for _ in range(100):  # a peer that keeps knocking for up to 30 s
        if not _alive(ticket):
            exited_while_knocking = True
            break
        try:
            with _connect(ticket) as sock:
                sock.sendall(b"junk")
        except OSError:
            exited_while_knocking = True
            break
        time.sleep(0.3)
    assert exited_while_knocking
    assert _proc(ticket).wait(30) == 2
    record = xstate.read_state(ticket["dest_dir"], ticket["transfer_id"])
    assert "no sender" in record["error"]
    transport.cancel_receive(ticket)


# -- after authentication -----------------------------------------------------------------


def _authenticated(ticket) -> socket.socket:
    sock = _connect(ticket)
    assert authenticate(sock, ticket)["ok"] is True
    return sock


BAD_OFFERS = [
    ("size 2**63", "xxh3", [{"name": "disk", "size": 2**63}]),
    ("size 2**64", "xxh3", [{"name": "disk", "size": 2**64}]),
    ("negative size", "xxh3", [{"name": "disk", "size": -1}]),
    ("size as text", "xxh3", [{"name": "disk", "size": "10"}]),
    ("size true", "xxh3", [{"name": "disk", "size": True}]),
    ("size float", "xxh3", [{"name": "disk", "size": 1.5}]),
    ("size null", "xxh3", [{"name": "disk", "size": None}]),
    ("files null", "xxh3", None),
    ("files [1]", "xxh3", [1]),
    ("files []", "xxh3", []),
    ("files an object", "xxh3", {"name": "disk", "size": 1}),
    ("too many files", "xxh3", [{"name": f"d{i}", "size": 1} for i in range(P.MAX_FILES + 1)]),
    ("name a number", "xxh3", [{"name": 5, "size": 1}]),
    ("name empty", "xxh3", [{"name": "", "size": 1}]),
    ("name with newline", "xxh3", [{"name": "a\nb", "size": 1}]),
    ("name with NUL", "xxh3", [{"name": "a\x00b", "size": 1}]),
    ("name a lone surrogate", "xxh3", [{"name": "\ud800", "size": 1}]),
    ("name too long", "xxh3", [{"name": "x" * 300, "size": 1}]),
    ("name escapes", "xxh3", [{"name": "../x", "size": 1}]),
    ("name absolute", "xxh3", [{"name": "/tmp/x", "size": 1}]),
    ("name of the state", "xxh3", [{"name": ".virtsdk-x", "size": 1}]),
    ("same name twice", "xxh3", [{"name": "a", "size": 1}, {"name": "./a", "size": 1}]),
    ("extra key", "xxh3", [{"name": "disk", "size": 1, "mode": 0o4777}]),
    ("missing size", "xxh3", [{"name": "disk"}]),
    ("checksum unknown", "md5", [{"name": "disk", "size": 1}]),
    ("checksum a list", ["xxh3"], [{"name": "disk", "size": 1}]),
    ("second file bad", "xxh3", [{"name": "ok", "size": 1}, {"name": "bad", "size": -5}]),
]


def test_malformed_offers_get_invalid_and_leave_nothing(transport, tmp_path, disk):
    dest = tmp_path / "dest"
    ticket = transport.prepare_receive(str(dest))
    failures = []
    for label, checksum, files in BAD_OFFERS:
        with _authenticated(ticket) as sock:
            try:
                reply = offer(sock, files, checksum)
            except (OSError, P.ProtocolError) as exc:
                reply = {"crash": repr(exc)}
        if reply.get("kind") != "invalid" or "Traceback" in reply.get("error", ""):
            failures.append((label, reply))
        if not _alive(ticket):
            failures.append((label, "receiver died"))
            break
        if not _only_state_in(dest):
            failures.append((label, sorted(os.listdir(dest))))
    # nested deeper than an offer ever is
    with _authenticated(ticket) as sock:
        sock.sendall(struct.pack(">I", 20001) + b"[" * 10000 + b"1" + b"]" * 10000)
        reply = _reply(sock)
    if reply is None or reply.get("kind") != "invalid":
        failures.append(("nested offer", reply))
    assert not failures, failures
    _finish_real_transfer(transport, ticket, disk)


def test_oversized_file_is_refused_and_removed(transport, tmp_path, disk):
    """A size the file system cannot hold: refused, and the files this offer created
    before it are removed again."""
    dest = tmp_path / "dest"
    ticket = transport.prepare_receive(str(dest))
    with _authenticated(ticket) as sock:
        reply = offer(sock, [{"name": "sub/a", "size": 4096},
                             {"name": "b", "size": P.MAX_FILE_SIZE}])
    assert reply["ok"] is False and reply["kind"] == "invalid", reply
    assert _only_state_in(dest)
    _finish_real_transfer(transport, ticket, disk)


def _frame(kind, flags, index, offset, raw_len, payload_len, digest=bytes(CSIZE),
           payload=b"") -> bytes:
    return P.FRAME.pack(kind, flags, index, offset, raw_len, payload_len) + digest + payload


def _info(**fields) -> bytes:
    return json.dumps(fields).encode()


SIZE = MiB
DATA = rnd(4096)


def _bad_frames() -> list[tuple[str, bytes]]:
    good_info = _info(digest="xxh3:00", bytes_sent=0, seconds=0.0, backing_file=None)
    return [
        ("unknown type", _frame(9, 0, 0, 0, 4096, 4096, payload=DATA)),
        ("unknown flag", _frame(P.DATA, 0x80, 0, 0, 4096, 4096, XXH3(DATA), DATA)),
        ("file index beyond", _frame(P.DATA, 0, 5, 0, 4096, 4096, XXH3(DATA), DATA)),
        ("file index 2**32-1", _frame(P.DATA, 0, 2**32 - 1, 0, 4096, 4096, XXH3(DATA), DATA)),
        ("offset 2**64-1", _frame(P.DATA, 0, 0, 2**64 - 1, 4096, 4096, XXH3(DATA), DATA)),
        ("run past the end", _frame(P.DATA, 0, 0, SIZE - 100, 4096, 4096, XXH3(DATA), DATA)),
        ("empty run", _frame(P.DATA, 0, 0, 0, 0, 0)),
        ("payload longer than data", _frame(P.DATA, 0, 0, 0, 4096, 8192, XXH3(DATA), DATA * 2)),
        ("payload 4 GiB", _frame(P.DATA, 0, 0, 0, 4096, 2**32 - 1, XXH3(DATA))),
        ("batch of 0", _frame(P.BATCH, 0, 0, 0, 4096, 4096, XXH3(DATA), DATA)),
        ("batch of 2**40", _frame(P.BATCH, 0, 0, 2**40, 4096, 4096, XXH3(DATA), DATA)),
        ("batch table larger than payload", _frame(P.BATCH, 0, 0, 4096, 4096, 4096,
                                                   XXH3(DATA), DATA)),
        ("batch run out of range", _batch([(SIZE, DATA)])),
        ("batch run of 0 bytes", _batch([(0, b"")])),
        ("FILE_DONE []", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 2, payload=b"[]")),
        ("FILE_DONE null", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 4, payload=b"null")),
        ("FILE_DONE not JSON", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 2, payload=b"\xff{")),
        ("FILE_DONE digest a number", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 12,
                                             payload=b'{"digest":5}')),
        ("FILE_DONE negative count", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 40, payload=_info(
            digest="x", bytes_sent=-1).ljust(40))),
        ("FILE_DONE infinite seconds", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 40, payload=(
            b'{"digest":"x","seconds":Infinity}').ljust(40))),
        ("FILE_DONE nested", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 6001,
                                    payload=b"[" * 3000 + b"1" + b"]" * 3000)),
        ("FILE_DONE wrong size", _frame(P.FILE_DONE, 0, 0, SIZE + 1, 0, len(good_info),
                                        payload=good_info)),
        ("FILE_DONE of 2 GiB", _frame(P.FILE_DONE, 0, 0, SIZE, 0, 2**31)),
        ("DONE with a payload", _frame(P.DONE, 0, 0, 0, 0, 5, payload=b"hello")),
    ]


def _batch(runs: list[tuple[int, bytes]]) -> bytes:
    table = b"".join(P.BATCH_ENTRY.pack(off, len(d)) + XXH3(d) for off, d in runs)
    raw = table + b"".join(d for _, d in runs)
    return _frame(P.BATCH, 0, 0, len(runs), len(raw), len(raw), XXH3(raw), raw)


def test_malformed_frames_get_invalid_and_the_transfer_still_completes(
        transport, tmp_path, disk):
    dest = tmp_path / "dest"
    ticket = transport.prepare_receive(str(dest))
    failures = []
    for label, frame in _bad_frames():
        with _authenticated(ticket) as sock:
            reply = offer(sock, [{"name": "disk", "size": SIZE}])
            assert reply["ok"] is True, reply
            try:
                sock.sendall(frame)
            except OSError:
                pass
            reply = _reply(sock)
        if reply is None or reply.get("kind") != "invalid" \
                or "Traceback" in reply.get("error", ""):
            failures.append((label, reply))
        if not _alive(ticket):
            failures.append((label, "receiver died"))
            break
    assert not failures, failures
    # the offer above created "disk" of SIZE bytes; the real sender cancels that
    # attempt and starts over, as the compute manager would after a failure
    transport.cancel_receive(ticket)
    ticket = transport.prepare_receive(str(dest))
    _finish_real_transfer(transport, ticket, disk)


def test_data_after_the_end_of_file_record_keeps_the_file_out_of_the_result(
        transport, tmp_path):
    """A file confirmed by FILE_DONE and then changed by one more run must not be
    reported complete with content its sender never confirmed."""
    dest = tmp_path / "dest"
    ticket = transport.prepare_receive(str(dest))
    digest = DigestBuilder(SIZE, "xxh3")
    digest.add(0, 4096, XXH3(DATA))
    info = _info(digest=digest.hexdigest(), bytes_sent=4096, seconds=0.1, backing_file=None)
    other = rnd(4096)
    with _authenticated(ticket) as sock:
        assert offer(sock, [{"name": "disk", "size": SIZE}])["ok"] is True
        sock.sendall(_frame(P.DATA, 0, 0, 0, 4096, 4096, XXH3(DATA), DATA)
                     + _frame(P.FILE_DONE, 0, 0, SIZE, 0, len(info), payload=info)
                     + _frame(P.DATA, 0, 0, 8192, 4096, 4096, XXH3(other), other)
                     + _frame(P.DONE, 0, 0, 0, 0, 0))
        reply = _reply(sock)
    assert reply is not None and reply["ok"] is False, reply
    record = xstate.read_state(str(dest), ticket["transfer_id"])
    assert not record["complete"] and not record["files"]
    assert _alive(ticket)
    transport.cancel_receive(ticket)
    assert os.listdir(dest) == []


def test_a_reconnecting_sender_replaces_its_stale_session(transport, tmp_path, disk):
    """The sender's old connection is still open on the receiver's side (it never saw
    it drop); a new authenticated one takes over at once instead of waiting for it."""
    ticket = transport.prepare_receive(str(tmp_path / "dest"))
    stale = _authenticated(ticket)
    try:
        assert offer(stale, [{"name": "disk", "size": os.path.getsize(disk)}])["ok"] is True
        _finish_real_transfer(transport, ticket, disk)
    finally:
        stale.close()
