"""Sparse-file reading: data extents, non-zero runs and a layout-independent digest.

Used by the senders (source host) and receivers (destination host) of every
transport.  Nothing here writes to the file it reads.

A file's *runs* are its maximal sequences of non-zero 4 KiB blocks, cut at every
:data:`CHUNK` boundary.  They depend only on the file's content (not on how it is
allocated), so the digest built from them (:func:`file_digest`) is the same for a
sparse original and a fully allocated copy.  Regions the filesystem reports as holes
(``SEEK_HOLE``) are never read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import xxhash

BLOCK = 4096
#: Largest run; also the grid that cuts runs (so runs are the same on both ends).
CHUNK = 4 << 20
_ZERO_CHUNK = bytes(CHUNK)
_ZERO_BLOCK = bytes(BLOCK)
#: What :func:`scan_runs` reads at a time.
PIECE = 1 << 20
_DIGEST_MAGIC = b"virtsdk-runs-v1"


class Run(NamedTuple):
    """``data`` (non-zero 4 KiB blocks) belongs at ``offset`` of the file."""

    offset: int
    data: memoryview


class ScannedRun(NamedTuple):
    """A run found by :func:`scan_runs`: where, how long, its checksum and its first
    ``keep`` bytes (all of it when it is no longer)."""

    offset: int
    length: int
    digest: bytes
    head: bytes


def _xxh3(data: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(data)


def _crc32(data: bytes | memoryview) -> bytes:
    return struct.pack(">I", zlib.crc32(data))


def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def _blake2b(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


#: Per-run checksum functions by name and their digest length.
CHECKSUMS: dict[str, tuple[Callable[[bytes | memoryview], bytes], int]] = {
    "xxh3": (_xxh3, 16),
    "crc32": (_crc32, 4),
    "sha256": (_sha256, 32),
    "blake2b": (_blake2b, 16),
}


class _Crc32:
    """Incremental form of :func:`_crc32`."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return struct.pack(">I", self.value)


#: Incremental hashers giving the same digests as :data:`CHECKSUMS`.
HASHERS: dict[str, Callable[[], Any]] = {
    "xxh3": xxhash.xxh3_128,
    "crc32": _Crc32,
    "sha256": hashlib.sha256,
    "blake2b": lambda: hashlib.blake2b(digest_size=16),
}


def checksum_function(name: str) -> Callable[[bytes | memoryview], bytes]:
    try:
        return CHECKSUMS[name][0]
    except KeyError:
        raise ValueError(f"unknown checksum {name!r}; known: {sorted(CHECKSUMS)}") from None


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each data extent, by SEEK_DATA/SEEK_HOLE.

    Falls back to one extent covering the whole file where the filesystem cannot
    tell.  Extents are widened to :data:`BLOCK` boundaries (clipped to ``size``).
    """
    if size <= 0:
        return
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    return
                raise
            if start >= size:
                return
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            start = start - start % BLOCK
            end = min(size, -(-end // BLOCK) * BLOCK)
            yield start, end - start
            pos = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP) or pos:
            raise
        yield 0, size


def spans(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """Extent pieces cut on the CHUNK grid, adjacent pieces of one cell merged."""
    cur_start = cur_end = -1
    for off, length in data_extents(fd, size):
        end = off + length
        while off < end:
            cell_end = min(end, (off // CHUNK + 1) * CHUNK)
            if cur_end == off and off % CHUNK:
                cur_end = cell_end
            else:
                if cur_end > cur_start:
                    yield cur_start, cur_end
                cur_start, cur_end = off, cell_end
            off = cell_end
    if cur_end > cur_start:
        yield cur_start, cur_end


def runs_in(offset: int, data: bytes | bytearray, length: int | None = None
            ) -> Iterator[Run]:
    """Split the first ``length`` bytes of ``data`` (read at ``offset``, BLOCK aligned;
    all of it when ``length`` is None) into its non-zero runs.

    No Python loop over the bytes: only blocks whose first 8 bytes are zero are
    compared with a zero block (``startswith``, a memcmp).
    """
    n = len(data) if length is None else length
    view = memoryview(data)[:n]
    full = n - n % BLOCK
    zero_blocks: list[int] = []
    if full:
        heads = view[:full].cast("Q")[::BLOCK // 8].tolist()
        if 0 in heads:
            if full == CHUNK and data.startswith(_ZERO_CHUNK):
                zero_blocks = list(range(len(heads)))
            else:
                zero_blocks = [i for i, head in enumerate(heads)
                               if not head and data.startswith(_ZERO_BLOCK, i * BLOCK)]
    if n > full and data.startswith(_ZERO_CHUNK[:n - full], full):
        zero_blocks.append(full // BLOCK)
    start = 0
    for block in zero_blocks:
        pos = block * BLOCK
        if pos > start:
            yield Run(offset + start, view[start:pos])
        start = pos + BLOCK
    if start < n:
        yield Run(offset + start, view[start:n])


def read_spans(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, data)`` of every extent piece (at most CHUNK bytes each)."""
    for start, end in spans(fd, size):
        data = os.pread(fd, end - start, start)
        if len(data) != end - start:
            raise OSError(errno.EIO, f"short read at {start}: file changed while reading")
        yield start, data


def read_spans_into(fd: int, size: int, buffers: Callable[[], bytearray]
                    ) -> Iterator[tuple[int, bytearray, int]]:
    """Like :func:`read_spans` without allocating: ``(offset, buffer, length)``, each
    piece read into a buffer (of at least CHUNK bytes) from ``buffers()``.  The
    caller owns every buffer it is given (and may hand it back to ``buffers``)."""
    for start, end in spans(fd, size):
        buf = buffers()
        got = os.preadv(fd, [memoryview(buf)[:end - start]], start)
        if got != end - start:
            raise OSError(errno.EIO, f"short read at {start}: file changed while reading")
        yield start, buf, got


def scan_runs(fd: int, size: int, checksum: str, keep: int = PIECE) -> Iterator[ScannedRun]:
    """Every non-zero run of the open file with its ``checksum``, read in PIECE-sized
    pieces into one small buffer (it stays in the CPU cache; nothing else is kept but
    each run's first ``keep`` bytes).  The same runs and digests as :func:`iter_runs`
    with :data:`CHECKSUMS`.  For senders that send the data itself with sendfile."""
    new_hasher = HASHERS[checksum]
    fn = CHECKSUMS[checksum][0]
    buf = bytearray(PIECE)
    view = memoryview(buf)
    for start, end in spans(fd, size):
        if end - start <= PIECE:  # one read; every run in it is whole: one-shot checksums
            n = end - start
            if os.preadv(fd, [view[:n]], start) != n:
                raise OSError(errno.EIO, f"short read at {start}: file changed while reading")
            for offset, data in runs_in(start, buf, n):
                yield ScannedRun(offset, len(data), fn(data), bytes(data[:keep]))
            continue
        cur: tuple[int, Any, bytearray] | None = None  # offset, hasher, head
        length = 0
        pos = start
        while pos < end:
            n = min(PIECE, end - pos)
            if os.preadv(fd, [view[:n]], pos) != n:
                raise OSError(errno.EIO, f"short read at {pos}: file changed while reading")
            for run in runs_in(pos, buf, n):
                if cur is None or cur[0] + length != run.offset:
                    if cur is not None:
                        yield ScannedRun(cur[0], length, cur[1].digest(), bytes(cur[2]))
                    cur, length = (run.offset, new_hasher(), bytearray()), 0
                cur[1].update(run.data)
                if len(cur[2]) < keep:
                    cur[2].extend(run.data[:keep - len(cur[2])])
                length += len(run.data)
            pos += n
        if cur is not None:
            yield ScannedRun(cur[0], length, cur[1].digest(), bytes(cur[2]))


def iter_runs(fd: int, size: int) -> Iterator[Run]:
    """Every non-zero run of the open file, in offset order."""
    for start, data in read_spans(fd, size):
        yield from runs_in(start, data)


class DigestBuilder:
    """Builds :func:`file_digest` from ``(offset, length, checksum)`` entries.

    Entries may arrive in any order (a resumed transfer); :meth:`hexdigest` sorts
    (and keeps its result until the next :meth:`add`: a receiver asks twice).
    """

    def __init__(self, size: int, checksum: str) -> None:
        self.size = size
        self.checksum = checksum
        self.entries: dict[int, tuple[int, bytes]] = {}
        self._hex: str | None = None

    def add(self, offset: int, length: int, digest: bytes) -> None:
        """Record a run; a run recorded again (resent after a resume) replaces it."""
        self.entries[offset] = (length, digest)
        self._hex = None

    def has(self, offset: int, length: int, digest: bytes) -> bool:
        return self.entries.get(offset) == (length, digest)

    def hexdigest(self) -> str:
        if self._hex is None:
            self._hex = self._compute()
        return self._hex

    def _compute(self) -> str:
        h = hashlib.sha256(_DIGEST_MAGIC + self.checksum.encode() + struct.pack(">Q", self.size))
        for offset, (length, digest) in sorted(self.entries.items()):
            h.update(struct.pack(">QQ", offset, length))
            h.update(digest)
        return f"{self.checksum}:{h.hexdigest()}"


def file_digest(path: str, checksum: str = "sha256") -> str:
    """Layout-independent digest of a file's content (reads only its data extents).

    Equal for two files with equal content however sparse each is; the per-run
    checksum is ``checksum`` (crc32, sha256 or blake2b) and the result is prefixed
    with its name.
    """
    fn = checksum_function(checksum)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        builder = DigestBuilder(size, checksum)
        for run in iter_runs(fh.fileno(), size):
            builder.add(run.offset, len(run.data), fn(run.data))
    return builder.hexdigest()


def allocated_bytes(path: str) -> int:
    """Bytes the filesystem allocated for ``path`` (``st_blocks * 512``)."""
    return os.stat(path).st_blocks * 512


def data_bytes(path: str) -> int:
    """Bytes in the file's data extents (what an extent-aware copy must move)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return sum(length for _, length in data_extents(fh.fileno(), size))
