"""Shared fixtures for the disk-transfer tests: odd sparse files made on the spot."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg

from virtsdk.transfer import protocol as P
from virtsdk.transfer import stream as stream_mod
from virtsdk.transfer.base import HostEndpoint, register_transport_opts
from virtsdk.transfer.stream import StreamTransport

LOCALHOST = HostEndpoint("127.0.0.1")

GiB = 1 << 30
MiB = 1 << 20


def make_sparse(path: str, size: int, pieces: list[tuple[int, bytes]]) -> str:
    """Create ``path`` of ``size`` bytes holding ``pieces`` (offset, data), holes elsewhere."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in pieces:
            fh.seek(offset)
            fh.write(data)
    return path


def rnd(n: int) -> bytes:
    return os.urandom(n)


# name -> (size, pieces); every shape the extent code has to get right
ODD_FILES: dict[str, tuple[int, list[tuple[int, bytes]]]] = {
    "empty": (0, []),
    "all_holes": (64 * MiB, []),
    "tiny_unaligned": (1000, [(0, rnd(1000))]),
    "data_at_start_and_end": (32 * MiB, [(0, rnd(MiB)), (32 * MiB - 5000, rnd(5000))]),
    "holes_at_start_and_end": (32 * MiB, [(8 * MiB + 123, rnd(3 * MiB + 77))]),
    "unaligned_extents": (
        16 * MiB,
        [(4095, rnd(2)), (MiB - 1, rnd(4099)), (5 * MiB + 17, rnd(10000)), (16 * MiB - 1, b"z")],
    ),
    "zero_block_inside_data": (8 * MiB, [(0, rnd(MiB) + bytes(64 << 10) + rnd(MiB))]),
    "crosses_chunk_grid": (12 * MiB, [(4 * MiB - 8192, rnd(16384)), (7 * MiB, rnd(2 * MiB))]),
    "beyond_4GiB": (5 * GiB + 4096, [(4 * GiB + 12345, rnd(70000)), (5 * GiB, rnd(4096))]),
    "many_small_extents": (128 * MiB, [(i * 65536 + (i % 7) * 512, rnd(4096 + i % 3))
                                       for i in range(2048)]),
}


@pytest.fixture(scope="session")
def odd_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every file of :data:`ODD_FILES`, created once per session."""
    root = tmp_path_factory.mktemp("odd")
    return {name: make_sparse(str(root / name), size, pieces)
            for name, (size, pieces) in ODD_FILES.items()}


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    """A private ConfigOpts with the transfer options registered."""
    c = cfg.ConfigOpts()
    c([], project="virtsdk-test")
    return c


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    """Data extents by lseek, written independently of virtsdk.transfer.extents."""
    out, pos = [], 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, end))
        pos = end
    return out


def same_content(a: str, b: str) -> bool:
    """Byte-for-byte comparison of two files; regions that are a hole in both are
    zero in both, so only the union of their data extents is read."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    size = os.path.getsize(a)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        spans = sorted(_extents(fa.fileno(), size) + _extents(fb.fileno(), size))
        for start, end in spans:
            pos = start
            while pos < end:
                n = min(8 * MiB, end - pos)
                if os.pread(fa.fileno(), n, pos) != os.pread(fb.fileno(), n, pos):
                    return False
                pos += n
    return True


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def assert_as_sparse(src: str, dst: str) -> None:
    """The destination allocates no more than the source.  Both are fsynced first:
    ext4 counts extent-tree blocks only once delayed allocation is done."""
    _fsync(src)
    _fsync(dst)
    assert os.stat(dst).st_blocks <= os.stat(src).st_blocks, (
        f"{dst} uses {os.stat(dst).st_blocks} blocks, source {os.stat(src).st_blocks}")


@pytest.fixture
def stream_transport(conf: cfg.ConfigOpts) -> Iterator[StreamTransport]:
    """A StreamTransport whose receivers listen on 127.0.0.1 (``prepare_receive``'s
    endpoint defaults to it), fail fast (no retries) and are all killed afterwards."""
    t = StreamTransport(conf)
    for key, value in (("receiver_idle_timeout", 120), ("io_timeout", 20), ("retries", 0),
                       ("handshake_timeout", 30)):
        conf.set_override(key, value, group="transport_stream")
    tickets: list[dict[str, Any]] = []
    orig = t.prepare_receive

    def prepare(dest_dir: str, endpoint: HostEndpoint = LOCALHOST) -> dict[str, Any]:
        ticket = orig(dest_dir, endpoint)
        tickets.append(ticket)
        return ticket

    t.prepare_receive = prepare  # type: ignore[method-assign]
    yield t
    for ticket in tickets:  # never leave a receiver behind
        proc = stream_mod._RECEIVERS.pop(ticket["transfer_id"], None)
        if proc is not None:
            proc.kill()
            proc.wait()


def authenticate(sock: socket.socket, ticket: dict[str, Any]) -> dict[str, Any]:
    """Raw client: magic and hello with the ticket's token; the receiver's answer."""
    sock.sendall(P.MAGIC)
    P.send_message(sock, {"token": ticket["token"], "transfer_id": ticket["transfer_id"]})
    return P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH)


def offer(sock: socket.socket, files: Any, checksum: Any = "xxh3") -> dict[str, Any]:
    """Raw client, authenticated: offer ``files``; the receiver's answer."""
    P.send_message(sock, {"checksum": checksum, "files": files})
    return P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH)


__all__ = ["authenticate", "offer", "make_sparse", "rnd", "same_content", "assert_as_sparse",
           "register_transport_opts"]
