"""Pieces of the ``stream`` ends on their own: the sender's scan that runs ahead of
the receiver's answer, and the receiver's store writing many small runs (its
writeback thread) and refusing bad ones."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from tests.transfer.conftest import MiB, assert_as_sparse, make_sparse, rnd, same_content
from virtsdk.transfer import protocol as P
from virtsdk.transfer.base import SendFile
from virtsdk.transfer.extents import CHECKSUMS, ScannedRun, file_digest, scan_runs
from virtsdk.transfer.receiver_store import WRITEBACK_STEP, Store
from virtsdk.transfer.sender import _Prefetch


def test_prefetch_yields_the_scan_in_order(tmp_path):
    path = make_sparse(str(tmp_path / "f"), 64 * MiB,
                       [(i * 65536 + 17, rnd(5000)) for i in range(600)])
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        direct = list(scan_runs(fh.fileno(), size, "xxh3", keep=4096))
        ahead = _Prefetch(scan_runs(fh.fileno(), size, "xxh3", keep=4096), budget=64 << 10)
        try:
            assert list(ahead) == direct  # a budget far below the file's data: it waits
        finally:
            ahead.close()


def test_prefetch_hands_on_the_scans_error():
    def failing() -> Iterator[ScannedRun]:
        yield ScannedRun(0, 4096, b"x" * 16, b"y" * 4096)
        raise OSError(5, "short read at 4096: file changed while reading")

    ahead = _Prefetch(failing())
    seen = []
    with pytest.raises(OSError, match="file changed"):
        for run in ahead:
            seen.append(run.offset)
    assert seen == [0]
    ahead.close()


def test_prefetch_closed_unread_stops_its_thread():
    started = threading.Event()

    def endless() -> Iterator[ScannedRun]:
        started.set()
        offset = 0
        while True:
            yield ScannedRun(offset, 4096, bytes(16), bytes(4096))
            offset += 4096

    ahead = _Prefetch(endless(), budget=1 << 20)
    started.wait(10)
    ahead.close()  # returns: the thread stops at its budget, then on close
    assert not ahead._thread.is_alive()


def test_many_small_runs_past_the_writeback_step_arrive_whole(stream_transport, tmp_path):
    """Batched small runs carrying more than WRITEBACK_STEP bytes start writeback on
    the store's thread; the file still arrives identical, as sparse, fsynced."""
    runs = WRITEBACK_STEP // 4096 + 2048
    src = make_sparse(str(tmp_path / "small"), runs * 65536,
                      [(i * 65536 + (i % 5) * 512, rnd(4096)) for i in range(runs)])
    ticket = stream_transport.prepare_receive(str(tmp_path / "dest"))
    result = stream_transport.send([SendFile(src, "disk")], ticket)
    (received,) = stream_transport.finish_receive(ticket, timeout=120)
    assert same_content(src, received.path)
    assert_as_sparse(src, received.path)
    assert result.files[0].digest == received.digest == file_digest(src, "xxh3")


def _batch(runs: list[tuple[int, bytes]], checksum: str = "xxh3") -> tuple[bytes, bytes]:
    fn = CHECKSUMS[checksum][0]
    table = b"".join(P.BATCH_ENTRY.pack(off, len(data)) + fn(data) for off, data in runs)
    payload = table + b"".join(data for _, data in runs)
    return payload, fn(payload)


def _store(tmp_path) -> Store:
    store = Store(str(tmp_path), "t1")
    store.open_files({"checksum": "xxh3", "files": [{"name": "disk", "size": 1 << 20}]})
    return store


def test_store_refuses_a_batch_run_whose_own_checksum_is_wrong(tmp_path):
    store = _store(tmp_path)
    try:
        good, bad = rnd(4096), rnd(4096)
        payload, digest = _batch([(0, good), (8192, bad)])
        tampered = bytearray(payload)
        tampered[-1] ^= 1  # the run's data no longer matches its table entry
        fn = CHECKSUMS["xxh3"][0]
        frame = (P.BATCH, 0, 0, 2, len(tampered), fn(bytes(tampered)), tampered, len(tampered))
        with pytest.raises(P.SessionError, match="bad run 1"):
            store.write_frame(frame)
        assert os.pread(store.files[0].fd, 4096, 0) == bytes(4096)  # nothing written
        ok = bytearray(payload)
        store.write_frame((P.BATCH, 0, 0, 2, len(ok), digest, ok, len(ok)))
        assert os.pread(store.files[0].fd, 4096, 8192) == bad
    finally:
        store.close()


def test_prefetch_is_taken_over_by_the_thread_that_iterates_it():
    """Runs found before iteration come from the early thread; once iterated, the
    same scan goes on in the iterating thread (and the early thread has ended)."""
    finders: list[int] = []
    early_done = threading.Event()
    box: list[_Prefetch] = []  # the prefetch, once made (its thread starts in __init__)

    def scan() -> Iterator[ScannedRun]:
        for i in range(2000):
            finders.append(threading.get_ident())
            if i == 300:  # wait here until iteration began: the rest is found after it
                early_done.set()
                while not (box and box[0]._stopped):
                    time.sleep(0.001)
            yield ScannedRun(i * 8192, 4096, bytes(16), bytes(16))

    ahead = _Prefetch(scan(), budget=1 << 30)
    box.append(ahead)
    try:
        early_done.wait(10)
        offsets = [run.offset for run in ahead]
        assert offsets == [i * 8192 for i in range(2000)]  # none lost, none twice
        assert not ahead._thread.is_alive()
        assert finders[0] == ahead._thread.ident
        assert finders[-1] == threading.get_ident()
    finally:
        ahead.close()
