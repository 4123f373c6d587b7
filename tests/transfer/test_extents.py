"""The sparse-reading primitives every transport builds on."""

from __future__ import annotations

import os

import pytest

from tests.transfer.conftest import MiB, make_sparse, rnd
from virtsdk.transfer import extents


def _runs(path: str) -> list[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return [(r.offset, bytes(r.data)) for r in extents.iter_runs(fh.fileno(), size)]


def test_runs_rebuild_the_file_exactly(odd_files):
    for name, path in odd_files.items():
        size = os.path.getsize(path)
        rebuilt = path + ".rebuilt"
        with open(rebuilt, "wb") as out:
            out.truncate(size)
            for offset, data in _runs(path):
                assert offset % extents.BLOCK == 0, name
                assert offset // extents.CHUNK == (offset + len(data) - 1) // extents.CHUNK
                assert data.strip(b"\0"), f"{name}: a run of zeros was produced"
                os.pwrite(out.fileno(), data, offset)
        from tests.transfer.conftest import same_content
        assert same_content(path, rebuilt), name
        os.unlink(rebuilt)


def test_holes_are_not_read(tmp_path):
    path = make_sparse(str(tmp_path / "f"), 64 * MiB, [(40 * MiB, b"x" * 10)])
    with open(path, "rb") as fh:
        spans = list(extents.data_extents(fh.fileno(), 64 * MiB))
    assert spans == [(40 * MiB, 4096)]
    assert _runs(path) == [(40 * MiB, b"x" * 10 + bytes(4086))]


def test_digest_ignores_allocation_but_not_content(tmp_path):
    data = rnd(3 * MiB)
    sparse = make_sparse(str(tmp_path / "sparse"), 16 * MiB, [(5 * MiB, data)])
    dense = str(tmp_path / "dense")
    with open(sparse, "rb") as src, open(dense, "wb") as dst:
        dst.write(src.read())  # every zero written out: fully allocated
    assert os.stat(dense).st_blocks > os.stat(sparse).st_blocks
    for checksum in extents.CHECKSUMS:
        assert extents.file_digest(sparse, checksum) == extents.file_digest(dense, checksum)
    with open(dense, "r+b") as fh:
        fh.seek(15 * MiB)
        fh.write(b"\1")
    assert extents.file_digest(sparse) != extents.file_digest(dense)


def test_digest_depends_on_size(tmp_path):
    a = make_sparse(str(tmp_path / "a"), MiB, [])
    b = make_sparse(str(tmp_path / "b"), 2 * MiB, [])
    assert extents.file_digest(a) != extents.file_digest(b)


def test_unknown_checksum_is_refused():
    with pytest.raises(ValueError, match="unknown checksum"):
        extents.checksum_function("md4")


def _runs_by_blocks(offset: int, data: bytes) -> list[tuple[int, bytes]]:
    """The definition: maximal sequences of non-zero BLOCKs (a short last block too)."""
    out: list[tuple[int, bytes]] = []
    start = -1
    for pos in range(0, len(data), extents.BLOCK):
        block = data[pos:pos + extents.BLOCK]
        if block.count(0) == len(block):
            if start >= 0:
                out.append((offset + start, data[start:pos]))
                start = -1
        elif start < 0:
            start = pos
    if start >= 0:
        out.append((offset + start, data[start:]))
    return out


@pytest.mark.parametrize("tail", [0, 1, 100, 4095])
def test_runs_in_finds_zero_blocks_however_they_start(tail):
    """Blocks that begin with zeros but are not zero, zero blocks between data, a
    short last block; the same from a larger reused buffer with a length."""
    block = extents.BLOCK
    late = bytearray(block)
    late[block - 1] = 7  # first 8 bytes zero, not a zero block
    early = bytearray(block)
    early[3] = 1
    pattern = [bytes(block), rnd(block), bytes(late), bytes(block), bytes(block), bytes(early),
               rnd(block), bytes(block)]
    for last in (bytes(tail), rnd(tail)):
        data = b"".join(pattern) + last
        expected = _runs_by_blocks(8 * block, data)
        for buf in (data, bytearray(data) + bytearray(b"\1" * 5000)):
            got = [(r.offset, bytes(r.data)) for r in extents.runs_in(8 * block, buf, len(data))]
            assert got == expected
    assert list(extents.runs_in(0, bytes(extents.CHUNK))) == []
    dense = rnd(extents.CHUNK)
    assert [(r.offset, bytes(r.data)) for r in extents.runs_in(0, dense)] == [(0, dense)]


@pytest.mark.parametrize("checksum", sorted(extents.CHECKSUMS))
def test_scan_runs_matches_iter_runs(odd_files, checksum):
    """Reading in small pieces and hashing as it goes finds the same runs, digests and
    heads as reading whole extent pieces."""
    fn = extents.checksum_function(checksum)
    for name, path in odd_files.items():
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            whole = [(r.offset, len(r.data), fn(r.data), bytes(r.data[:1000]))
                     for r in extents.iter_runs(fh.fileno(), size)]
            scanned = [tuple(r) for r in extents.scan_runs(fh.fileno(), size, checksum, 1000)]
        assert scanned == whole, name


def test_digest_builder_keeps_its_digest_only_until_the_next_run():
    first, second = bytes(range(16)), bytes(range(16, 32))
    built = extents.DigestBuilder(8192, "xxh3")
    built.add(0, 4096, first)
    before = built.hexdigest()
    assert built.hexdigest() == before
    built.add(4096, 4096, second)
    fresh = extents.DigestBuilder(8192, "xxh3")
    fresh.add(4096, 4096, second)
    fresh.add(0, 4096, first)
    assert built.hexdigest() == fresh.hexdigest() != before
    built.add(4096, 4096, first)  # a run sent again replaces the earlier one
    assert built.hexdigest() != fresh.hexdigest()
