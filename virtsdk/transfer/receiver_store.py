"""The ``stream`` receiver's files on disk: create, verify and write, journal, resume.

A :class:`Store` owns the files of one transfer under ``dest_dir``: it creates them
(never overwriting anything, every name confined), writes each run only after its
checksum matched, journals every run written (so a new connection, or a restarted
receiver, resumes where the last stopped), and at the end fsyncs and records the
transfer complete in its state record (:mod:`virtsdk.transfer.state`).

Large runs go to disk with direct I/O (``O_DIRECT``, from the receiving pipeline's
page-aligned buffers): no copy into the page cache and no page-cache memory to find
for them, which on a busy host costs more than the disk write itself.  Small,
unaligned or decompressed runs are written through the page cache, and their
writeback is started as they arrive (on a thread of its own, so the disk works while
the network does and the final fsync only waits for the tail).  A file system that
refuses direct I/O gets every run through the page cache.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import queue
import struct
import threading
from typing import Any

from virtsdk.exceptions import Invalid
from virtsdk.transfer import protocol as P
from virtsdk.transfer import state as xstate
from virtsdk.transfer.extents import CHECKSUMS, DigestBuilder, allocated_bytes, checksum_function
from virtsdk.transfer.names import confine_name

_JOURNAL = struct.Struct(">IQI")
#: Longest name component a file system takes (bytes).
NAME_MAX = 255
#: Bytes of a file received between two starts of its writeback.
WRITEBACK_STEP = 32 << 20
#: Smallest run written with direct I/O (smaller ones go through the page cache).
DIRECT_MIN = 256 << 10
#: Direct I/O offsets and lengths are multiples of this (the largest logical block
#: size of common disks; memory alignment comes from page-aligned buffers).
DIRECT_ALIGN = 4096
_SYNC_FILE_RANGE_WRITE = 2


class IncomingFile:
    """One file being received: where it goes, its open descriptor, the digest of the
    runs written so far and (once the sender said so) its end-of-file record."""

    def __init__(self, name: str, size: int, path: str, fd: int, digest: DigestBuilder
                 ) -> None:
        self.name = name
        self.size = size
        self.path = path
        self.fd = fd
        #: the same file opened for direct I/O (-1: not possible here)
        self.direct_fd = open_direct(fd)
        self.digest = digest
        self.done: dict[str, Any] | None = None
        self.bytes_written = 0
        #: bytes written, and the span they lie in, since writeback was last started
        self.unsynced = 0
        self.dirty_lo = -1
        self.dirty_hi = 0

    def close(self) -> None:
        os.close(self.fd)
        if self.direct_fd >= 0:
            os.close(self.direct_fd)
            self.direct_fd = -1


@functools.cache
def libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)``: start writing
    those dirty pages back without waiting for them (Linux; elsewhere a no-op).
    ctypes releases the GIL for the call."""
    try:
        fn = libc().sync_file_range
    except AttributeError:
        return
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


class Writeback:
    """Starts writeback on a thread of its own, so that the thread writing frames
    never blocks in the kernel's block allocation (thousands of small runs make
    that the most expensive part of writing them).  Started on first use;
    :meth:`stop` waits for what was asked, and must come before the descriptors
    are closed."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def request(self, fd: int, offset: int, nbytes: int) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        self._requests.put((fd, offset, nbytes))

    def _run(self) -> None:
        while (item := self._requests.get()) is not None:
            start_writeback(*item)

    def stop(self) -> None:
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join()
            self._thread = None


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (a short write, as on a nearly full disk,
    is continued; the next call then raises the error)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, f"wrote nothing at {offset}")
        view, offset = view[written:], offset + written


def open_direct(fd: int) -> int:
    """The file open as ``fd`` opened again, for writing with ``O_DIRECT``; -1 where
    the platform or file system does not offer it (tmpfs on older kernels, for one).
    It is reopened through ``/proc/self/fd``, not by name, so it is the same file
    even if its name was replaced since."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return -1
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | flag)
    except OSError:
        return -1


def write_direct(f: IncomingFile, data: memoryview, offset: int) -> bool:
    """Write ``data`` at ``offset`` with direct I/O if it qualifies (long enough,
    block-aligned, page-aligned memory is the caller's part); False if it was not
    written (the caller writes it through the page cache).  A file system that
    refuses it once (EINVAL) is not asked again for this file."""
    n = len(data)
    if f.direct_fd < 0 or n < DIRECT_MIN or n % DIRECT_ALIGN or offset % DIRECT_ALIGN:
        return False
    try:
        written = os.pwrite(f.direct_fd, data, offset)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        os.close(f.direct_fd)
        f.direct_fd = -1
        return False
    if written != n:  # e.g. a full disk: the rest through the page cache, which reports it
        pwrite_all(f.fd, data[written:], offset + written)
    return True


def destination(dest_dir: str, name: str) -> str:
    """The confined path of an offered name (whose type and characters the schema
    already checked); also refuses components longer than the file system takes."""
    if any(len(part.encode()) > NAME_MAX for part in name.split("/")):
        raise Invalid(f"a component of {name[:80]!r} is longer than {NAME_MAX} bytes")
    return confine_name(dest_dir, name)


class Store:
    """The files of transfer ``transfer_id`` under ``dest_dir`` (see the module doc)."""

    def __init__(self, dest_dir: str, transfer_id: str, fsync: bool = True) -> None:
        self.dest_dir = dest_dir
        self.transfer_id = transfer_id
        self.fsync = fsync
        self.files: list[IncomingFile] = []
        self.checksum = ""
        self.journal_fd = -1
        self.writeback = Writeback()
        self._dctx: Any = None

    # -- the state record -----------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        return xstate.read_state(self.dest_dir, self.transfer_id) or {
            "transport": "stream", "created": [], "files": [], "complete": False, "error": ""}

    def set_error(self, message: str) -> None:
        record = self.record()
        record["error"] = message
        xstate.write_state(self.dest_dir, self.transfer_id, record)

    # -- opening ------------------------------------------------------------------------

    def open_files(self, offer: dict[str, Any]) -> None:
        """First session: create the files.  Later sessions must name the same ones.
        ``offer`` is valid against :data:`protocol.OFFER`; a failure here leaves
        nothing behind (what this call created is removed again)."""
        wanted = [(f["name"], f["size"]) for f in offer["files"]]
        checksum = offer["checksum"]
        if self.files:
            have = [(f.name, f.size) for f in self.files]
            if wanted != have or checksum != self.checksum:
                raise P.SessionError("invalid", "a resumed transfer must send the same files")
            return
        try:
            paths = [destination(self.dest_dir, name) for name, _ in wanted]
        except Invalid as exc:
            raise P.SessionError("invalid", str(exc)) from None
        if len(set(paths)) != len(paths):
            raise P.SessionError("invalid", "the same destination name twice")
        existing = [name for (name, _), path in zip(wanted, paths, strict=True)
                    if os.path.lexists(path)]
        if existing:
            raise P.SessionError("invalid", f"{', '.join(existing)} already exists on the "
                                            "destination; refusing to overwrite")
        record = self.record()
        record.update(created=[], created_dirs=[], sizes=[size for _, size in wanted],
                      checksum=checksum)
        try:
            for (name, size), path in zip(wanted, paths, strict=True):
                record["created_dirs"] += xstate.make_parents(self.dest_dir, path)
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    raise P.SessionError("invalid", f"{name} already exists on the "
                                                    "destination") from None
                # recorded only once it is ours, so a cancel never deletes a file it found
                record["created"].append(name)
                xstate.write_state(self.dest_dir, self.transfer_id, record)
                self.files.append(IncomingFile(name, size, path, fd,
                                               DigestBuilder(size, checksum)))
                try:
                    os.ftruncate(fd, size)
                except OSError as exc:
                    raise P.SessionError("invalid", f"cannot make {name} {size} bytes long: "
                                                    f"{exc.strerror}") from None
            work = xstate.work_dir(self.dest_dir, self.transfer_id)
            os.makedirs(work, exist_ok=True)
            self.journal_fd = os.open(os.path.join(work, "journal"),
                                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except BaseException:
            self._undo_open(record)
            raise
        self.checksum = checksum

    def _undo_open(self, record: dict[str, Any]) -> None:
        """Remove what a failed :meth:`open_files` created (files, then directories)."""
        for f in self.files:
            f.close()
        self.files = []
        for name in record["created"]:
            try:
                os.unlink(confine_name(self.dest_dir, name))
            except (OSError, Invalid):
                pass
        for name in reversed(record["created_dirs"]):
            try:
                os.rmdir(confine_name(self.dest_dir, name))
            except (OSError, Invalid):
                pass
        record.update(created=[], created_dirs=[], sizes=[])
        record.pop("checksum", None)
        xstate.write_state(self.dest_dir, self.transfer_id, record)

    def reload(self) -> int:
        """Restarted receiver: reopen the files this transfer created and replay the
        journal, re-checking each run against the data on disk.  Returns the bytes
        kept (0 when there is nothing to resume)."""
        record = self.record()
        names, sizes = record.get("created", []), record.get("sizes", [])
        if not names or len(names) != len(sizes) or record.get("checksum") not in CHECKSUMS:
            return 0
        self.checksum = record["checksum"]
        for name, size in zip(names, sizes, strict=True):
            path = confine_name(self.dest_dir, name)
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            self.files.append(IncomingFile(name, size, path, fd,
                                           DigestBuilder(size, self.checksum)))
        fn = self.checksum_fn
        csize = CHECKSUMS[self.checksum][1]
        journal = os.path.join(xstate.work_dir(self.dest_dir, self.transfer_id), "journal")
        kept = 0
        with open(journal, "rb") as fh:
            entry = _JOURNAL.size + csize
            while len(raw := fh.read(entry)) == entry:
                index, offset, length = _JOURNAL.unpack_from(raw)
                digest = raw[_JOURNAL.size:]
                if index >= len(self.files):
                    continue
                f = self.files[index]
                if fn(os.pread(f.fd, length, offset)) == digest:
                    f.digest.add(offset, length, digest)
                    kept += length
        self.journal_fd = os.open(journal, os.O_WRONLY | os.O_APPEND)
        return kept

    def done_map(self) -> dict[str, list[list[Any]]]:
        """The runs already on disk, per file (the reply to an offer)."""
        return {f.name: [[off, length, digest.hex()]
                         for off, (length, digest) in sorted(f.digest.entries.items())]
                for f in self.files}

    @property
    def checksum_fn(self) -> Any:
        return checksum_function(self.checksum)

    # -- writing ------------------------------------------------------------------------

    def _decompress(self, f: IncomingFile, offset: int, payload: memoryview,
                    raw_len: int) -> bytes:
        import zstandard  # only a compressed frame needs it: the receiver starts lighter

        if self._dctx is None:
            self._dctx = zstandard.ZstdDecompressor()
        try:
            data: bytes = self._dctx.decompress(payload, max_output_size=raw_len)
        except zstandard.ZstdError as exc:
            raise P.SessionError("integrity", f"{f.name}@{offset}: {exc}") from exc
        return data

    def write_frame(self, frame: tuple[Any, ...]) -> None:
        """Verify one frame and write it (nothing is written unless the checksum
        matches).  Called by one thread at a time (the pipeline's)."""
        if frame[0] == P.FILE_DONE:
            _kind, index, info = frame
            f = self.files[index]
            if info["digest"] != f.digest.hexdigest():
                raise P.SessionError("integrity", f"{f.name}: file digest mismatch "
                                                  "(runs missing?)")
            return
        kind, flags, index, offset, raw_len, expected, buf, payload_len = frame
        f = self.files[index]
        payload = memoryview(buf)[:payload_len]
        data: bytes | memoryview = payload
        if flags & P.COMPRESSED:
            data = self._decompress(f, offset, payload, raw_len)
        if len(data) != raw_len or self.checksum_fn(data) != expected:
            what = "a batch of runs" if kind == P.BATCH else f"the run at {offset}"
            raise P.SessionError("integrity", f"{f.name}: checksum mismatch in {what}")
        if kind == P.BATCH:
            self._write_batch(f, index, offset, memoryview(data))
            return
        # an uncompressed payload lies at the start of a page-aligned pipeline buffer
        direct = not flags & P.COMPRESSED and write_direct(f, payload, offset)
        if not direct:
            pwrite_all(f.fd, data, offset)
        f.bytes_written += raw_len
        f.digest.add(offset, raw_len, expected)
        os.write(self.journal_fd, _JOURNAL.pack(index, offset, raw_len) + expected)
        if not direct:
            self._written(f, offset, offset + raw_len, raw_len)

    def _write_batch(self, f: IncomingFile, index: int, count: int, data: memoryview) -> None:
        """Check every run of a (checksum-verified) BATCH payload, then write them all."""
        fn = self.checksum_fn
        csize = CHECKSUMS[self.checksum][1]
        esize = P.BATCH_ENTRY.size + csize
        pos = count * esize
        runs = []
        unpack = P.BATCH_ENTRY.unpack_from
        for i in range(count):
            offset, length = unpack(data, i * esize)
            digest = bytes(data[i * esize + P.BATCH_ENTRY.size:(i + 1) * esize])
            chunk = data[pos:pos + length]
            pos += length
            if not length or len(chunk) != length or offset + length > f.size:
                raise P.SessionError("invalid", f"{f.name}: run {i} of a batch is out of range")
            if fn(chunk) != digest:
                raise P.SessionError("integrity", f"{f.name}: bad run {i} in a batch")
            runs.append((offset, chunk, digest))
        if pos != len(data):
            raise P.SessionError("invalid", f"{f.name}: batch payload has trailing bytes")
        journal = []
        lo, hi = f.size, 0
        for offset, chunk, digest in runs:
            done = os.pwrite(f.fd, chunk, offset)
            if done != len(chunk):  # short (a nearly full disk): finish it, or raise
                pwrite_all(f.fd, chunk[done:], offset + done)
            f.digest.add(offset, len(chunk), digest)
            journal.append(_JOURNAL.pack(index, offset, len(chunk)) + digest)
            lo, hi = min(lo, offset), max(hi, offset + len(chunk))
        written = pos - count * esize
        f.bytes_written += written
        os.write(self.journal_fd, b"".join(journal))
        self._written(f, lo, hi, written)

    def _written(self, f: IncomingFile, lo: int, hi: int, nbytes: int) -> None:
        """Start writing back what arrived every :data:`WRITEBACK_STEP` bytes (just
        the span written since the last start), so that the disk works while the
        network does and the fsync at the end only waits for the tail."""
        if not self.fsync:
            return
        f.unsynced += nbytes
        f.dirty_lo = lo if f.dirty_lo < 0 else min(f.dirty_lo, lo)
        f.dirty_hi = max(f.dirty_hi, hi)
        if f.unsynced >= WRITEBACK_STEP:
            self.writeback.request(f.fd, f.dirty_lo, f.dirty_hi - f.dirty_lo)
            f.unsynced, f.dirty_lo, f.dirty_hi = 0, -1, 0

    # -- finishing ----------------------------------------------------------------------

    def verify_and_sync(self) -> list[dict[str, Any]]:
        """At DONE: every file confirmed, its data on stable storage; returns what the
        record lists for each (the fields of ``base.SentFile``, which is not imported:
        this process must start fast)."""
        missing = [f.name for f in self.files if f.done is None]
        if missing:
            raise P.SessionError("integrity", f"no end-of-file record for {missing}")
        self.writeback.stop()
        sent = []
        for f in self.files:
            if self.fsync:
                os.fsync(f.fd)
            info = f.done or {}
            sent.append({"name": f.name, "size": f.size,
                         "bytes_sent": info.get("bytes_sent", 0), "bytes_on_wire": 0,
                         "digest": f.digest.hexdigest(), "seconds": info.get("seconds", 0.0),
                         "backing_file": info.get("backing_file")})
            info["allocated"] = allocated_bytes(f.path)
        return sent

    def record_complete(self, sent: list[dict[str, Any]]) -> None:
        """The last thing a receiver does: record the transfer complete and say so on
        stdout (``finish_receive`` wakes on that line instead of polling)."""
        record = self.record()
        record.update(files=sent, complete=True, error="")
        xstate.write_state(self.dest_dir, self.transfer_id, record)
        try:
            print('{"complete": true}', flush=True)
        except OSError:
            pass  # whoever started us is gone; the record says it all

    def close(self) -> None:
        self.writeback.stop()
        for f in self.files:
            f.close()
        self.files = []
        if self.journal_fd >= 0:
            os.close(self.journal_fd)
            self.journal_fd = -1
