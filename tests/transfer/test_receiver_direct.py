"""The stream receiver's direct I/O: large aligned runs bypass the page cache, the
rest (small, unaligned, decompressed) goes through it, and a file system that
refuses direct I/O gets everything through the page cache."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

from tests.transfer.conftest import MiB, rnd
from virtsdk.transfer import protocol as P
from virtsdk.transfer import receiver_store
from virtsdk.transfer.extents import CHECKSUMS, DigestBuilder
from virtsdk.transfer.receiver_store import DIRECT_MIN, IncomingFile, Store, write_direct

XXH3 = CHECKSUMS["xxh3"][0]


def _store(tmp_path, size: int = 8 * MiB) -> Store:
    store = Store(str(tmp_path), "t1")
    store.open_files({"checksum": "xxh3", "files": [{"name": "disk", "size": size}]})
    return store


def _frame(data: bytes, offset: int) -> tuple[object, ...]:
    """A DATA frame as the receiving pipeline hands it over: the payload at the
    start of a page-aligned buffer."""
    buf = mmap.mmap(-1, max(len(data), 1))
    buf[:len(data)] = data
    return (P.DATA, 0, 0, offset, len(data), XXH3(data), buf, len(data))


def _direct_supported(tmp_path) -> bool:
    fd = os.open(tmp_path / "probe", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        direct = receiver_store.open_direct(fd)
    finally:
        os.close(fd)
    if direct >= 0:
        os.close(direct)
    return direct >= 0


def test_large_aligned_runs_arrive_intact_and_are_journalled(tmp_path):
    store = _store(tmp_path)
    try:
        big, tail = rnd(2 * MiB), rnd(5000)  # one direct, one through the page cache
        store.write_frame(_frame(big, 4 * MiB))
        store.write_frame(_frame(tail, 8 * MiB - 5000 - 3))
        f = store.files[0]
        assert os.pread(f.fd, len(big), 4 * MiB) == big
        assert os.pread(f.fd, len(tail), 8 * MiB - 5000 - 3) == tail
        assert f.digest.has(4 * MiB, len(big), XXH3(big))
        assert f.bytes_written == len(big) + len(tail)
    finally:
        store.close()
    # a restarted receiver re-reads the journal and keeps both runs (data on disk matches)
    again = Store(str(tmp_path), "t1")
    try:
        assert again.reload() == len(big) + len(tail)
    finally:
        again.close()


def test_direct_io_is_used_only_where_it_qualifies(tmp_path):
    if not _direct_supported(tmp_path):
        pytest.skip("this file system refuses O_DIRECT")
    path = str(tmp_path / "f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    f = IncomingFile("f", 16 * MiB, path, fd, DigestBuilder(16 * MiB, "xxh3"))
    buf = mmap.mmap(-1, 4 * MiB)
    view = memoryview(buf)
    try:
        assert f.direct_fd >= 0
        assert not write_direct(f, view[:DIRECT_MIN - 4096], 0)  # too small
        assert not write_direct(f, view[:DIRECT_MIN + 100], 0)  # length not block-aligned
        assert not write_direct(f, view[:DIRECT_MIN], 512)  # offset not block-aligned
        buf[:MiB] = data = rnd(MiB)
        assert write_direct(f, view[:MiB], 3 * MiB)
        assert os.pread(fd, MiB, 3 * MiB) == data
    finally:
        view.release()
        f.close()


def test_a_file_system_refusing_direct_io_gets_the_page_cache(tmp_path, monkeypatch):
    """EINVAL from a direct write (a file system that takes O_DIRECT at open but not
    this write) sends the run, and the file's later runs, through the page cache."""
    store = _store(tmp_path)
    f = store.files[0]
    if f.direct_fd < 0:
        store.close()
        pytest.skip("this file system refuses O_DIRECT at open already")
    real_pwrite = os.pwrite
    direct_fd = f.direct_fd

    def pwrite(fd: int, data: object, offset: int) -> int:
        if fd == direct_fd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(receiver_store.os, "pwrite", pwrite)
    try:
        first, second = rnd(MiB), rnd(MiB)
        store.write_frame(_frame(first, 0))
        assert f.direct_fd == -1
        store.write_frame(_frame(second, 2 * MiB))
        monkeypatch.undo()
        assert os.pread(f.fd, MiB, 0) == first
        assert os.pread(f.fd, MiB, 2 * MiB) == second
        assert f.unsynced == 2 * MiB  # counted for writeback like any page-cache write
    finally:
        monkeypatch.undo()
        store.close()


def test_compressed_runs_go_through_the_page_cache(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    store = _store(tmp_path)
    try:
        data = b"virtsdk " * (MiB // 8)
        packed = zstandard.ZstdCompressor().compress(data)
        buf = mmap.mmap(-1, len(packed))
        buf[:] = packed
        store.write_frame((P.DATA, P.COMPRESSED, 0, 0, len(data), XXH3(data), buf,
                           len(packed)))
        f = store.files[0]
        assert os.pread(f.fd, len(data), 0) == data
        assert f.unsynced == len(data)
    finally:
        store.close()


def test_short_writes_are_finished(tmp_path, monkeypatch):
    """A write the kernel cut short (as on a nearly full disk) is continued, on both
    the page-cache and the direct path: nothing of a run is silently left out."""
    store = _store(tmp_path)
    real_pwrite = os.pwrite

    cuts = []

    def short(fd: int, data: object, offset: int) -> int:
        view = memoryview(data)  # type: ignore[arg-type]
        n = len(view) // 2  # half of it; whole blocks when there are any (direct I/O)
        n = n & ~4095 if n >= 4096 else max(n, 1)
        cuts.append(len(view) - n)
        return real_pwrite(fd, view[:n], offset)

    monkeypatch.setattr(receiver_store.os, "pwrite", short)
    try:
        big, small = rnd(2 * MiB), rnd(5000)
        store.write_frame(_frame(big, 0))
        store.write_frame(_frame(small, 4 * MiB + 1))
        payload = P.BATCH_ENTRY.pack(6 * MiB, 8192) + XXH3(small[:4096] * 2)
        batch = payload + small[:4096] * 2
        buf = mmap.mmap(-1, len(batch))
        buf[:] = batch
        store.write_frame((P.BATCH, 0, 0, 1, len(batch), XXH3(batch), buf, len(batch)))
        monkeypatch.undo()
        assert len(cuts) > 6 and sum(1 for c in cuts if c) >= 3  # cut short, continued
        f = store.files[0]
        assert os.pread(f.fd, len(big), 0) == big
        assert os.pread(f.fd, len(small), 4 * MiB + 1) == small
        assert os.pread(f.fd, 8192, 6 * MiB) == small[:4096] * 2
    finally:
        monkeypatch.undo()
        store.close()


def test_direct_writes_reach_the_open_file_even_if_its_name_was_replaced(tmp_path):
    """The direct descriptor is the file the store created, not whatever its name
    points to later (it is reopened through /proc/self/fd, not by name)."""
    store = _store(tmp_path)
    try:
        f = store.files[0]
        if f.direct_fd < 0:
            pytest.skip("this file system refuses O_DIRECT")
        os.rename(f.path, tmp_path / "moved")
        (tmp_path / "disk").write_bytes(b"someone else's file")
        data = rnd(MiB)
        store.write_frame(_frame(data, 0))
        assert os.pread(f.fd, MiB, 0) == data
        assert (tmp_path / "disk").read_bytes() == b"someone else's file"
    finally:
        store.close()
