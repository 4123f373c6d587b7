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
