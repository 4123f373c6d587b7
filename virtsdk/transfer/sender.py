"""The ``stream`` sender: runs on the source host inside ``StreamTransport.send``.

Reader threads (one per file being sent, ``parallel_files`` at a time) read only the
data extents, drop all-zero blocks, checksum each run and compress it when that pays
(:class:`CompressionChooser`); the calling thread writes the frames to one TCP (or
TLS) connection.  Over plain TCP a raw run's data is read only to find and checksum
it (1 MiB at a time, into one buffer that stays in the CPU cache) and the kernel
sends it from the page cache (sendfile); over TLS, or with compression ``on``, runs
are read whole into a few reused buffers.  Runs the receiver already has (same
offset, length and checksum, from an earlier interrupted session) are not sent
again.  Source files are opened read-only.
"""

from __future__ import annotations

import collections
import errno
import json
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zstandard

from virtsdk.exceptions import DiskTransferError, TransferAuthError, TransferIntegrityError
from virtsdk.transfer import protocol as P
from virtsdk.transfer.base import ProgressMeter, SendFile, SentFile
from virtsdk.transfer.extents import (
    CHECKSUMS,
    CHUNK,
    DigestBuilder,
    ScannedRun,
    read_spans_into,
    runs_in,
    scan_runs,
)
from virtsdk.transfer.images import backing_file_of

_SAMPLE = 256 << 10
#: How far (bytes of kept run heads) a file's scan may run ahead of its sending.
PREFETCH_BYTES = 32 << 20
#: Runs smaller than this are batched; a batch is sent once it holds BATCH_BYTES.
SMALL_RUN = 256 << 10
BATCH_BYTES = 2 << 20
#: Read buffers per file being sent (CHUNK bytes each, reused: no per-chunk allocation).
READ_BUFFERS = 4
_END = object()


@dataclass
class SenderOptions:
    """How to send (built from ``[transport_stream]`` by StreamTransport)."""

    checksum: str = "xxh3"
    compression: str = "auto"  # auto | on | off
    level: int = 1
    tls: ssl.SSLContext | None = None
    connect_timeout: float = 10.0
    io_timeout: float = 60.0
    retries: int = 3
    parallel_files: int = 2
    #: Test hook: called with the number of bytes put on the wire so far.
    on_wire: Any = None


class CompressionChooser:
    """Decides per run whether zstd makes the transfer faster.

    ``auto`` compares the measured link rate with the measured compression rate and
    ratio (from a 256 KiB sample of every 32nd run): compress when
    ``max(len/compress_rate, len*ratio/link_rate) < len/link_rate``.
    """

    def __init__(self, mode: str, level: int) -> None:
        self.mode = mode
        self.level = level
        self.link_bps = 0.0
        self.comp_bps = 0.0
        self.ratio = 1.0
        self._runs = 0
        self._lock = threading.Lock()

    def observe_link(self, nbytes: int, seconds: float) -> None:
        if seconds > 0 and nbytes >= 65536:
            rate = nbytes / seconds
            with self._lock:
                self.link_bps = rate if not self.link_bps else 0.7 * self.link_bps + 0.3 * rate

    def _observe_compression(self, raw: int, out: int, seconds: float) -> None:
        with self._lock:
            rate = raw / max(seconds, 1e-9)
            self.comp_bps = rate if not self.comp_bps else 0.7 * self.comp_bps + 0.3 * rate
            self.ratio = 0.5 * self.ratio + 0.5 * (out / raw) if self._runs > 1 else out / raw

    def _worth_it(self) -> bool:
        if not self.link_bps or not self.comp_bps:
            return self.ratio < 0.9
        t_raw = 1 / self.link_bps
        t_comp = max(1 / self.comp_bps, self.ratio / self.link_bps)
        return t_comp < 0.95 * t_raw

    def wants(self, sample: bytes | memoryview, length: int,
              cctx: zstandard.ZstdCompressor) -> bool:
        """Should a run of ``length`` bytes that starts with ``sample`` be compressed?
        (In ``auto`` every 32nd call measures zstd on the sample's first 256 KiB.)"""
        if self.mode == "off" or length < 16384:
            return False
        if self.mode == "on":
            return True
        with self._lock:
            self._runs += 1
            probe = self._runs % 32 == 1
        if probe:
            sample = sample[:_SAMPLE]
            t0 = time.perf_counter()
            out = cctx.compress(sample)
            self._observe_compression(len(sample), len(out), time.perf_counter() - t0)
        return self._worth_it()

    def compress(self, data: bytes | memoryview, cctx: zstandard.ZstdCompressor
                 ) -> bytes | None:
        """``data`` compressed (in ``auto``: None unless that is smaller)."""
        if self.mode == "on":
            return cctx.compress(data)
        t0 = time.perf_counter()
        out = cctx.compress(data)
        self._observe_compression(len(data), len(out), time.perf_counter() - t0)
        return out if len(out) < len(data) else None

    def maybe_compress(self, data: memoryview, cctx: zstandard.ZstdCompressor) -> bytes | None:
        """The compressed run, or None to send it raw."""
        return self.compress(data, cctx) if self.wants(data, len(data), cctx) else None


@dataclass
class _FileState:
    index: int
    send: SendFile
    size: int
    digest: DigestBuilder
    done: dict[int, tuple[int, bytes]]
    sent: SentFile
    resumed: int = 0
    started: float = field(default_factory=time.monotonic)


def _connect(ticket: dict[str, Any], opts: SenderOptions) -> socket.socket:
    sock = socket.create_connection((ticket["address"], int(ticket["port"])),
                                    timeout=opts.connect_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not ticket.get("tls"):
        P.blocking_with_timeout(sock, opts.io_timeout)
        return sock
    sock.settimeout(opts.io_timeout)
    if opts.tls is None:
        sock.close()
        raise DiskTransferError("the receiver expects TLS but no TLS is configured")
    return opts.tls.wrap_socket(sock, server_hostname=ticket["address"])


def _sendfile(sock: socket.socket, src: Any, offset: int, count: int) -> None:
    """Send ``count`` bytes of the open file ``src`` from ``offset`` (kernel sendfile).
    On a blocking socket one call usually sends it all."""
    if sock.gettimeout() is not None:
        sent = sock.sendfile(src, offset, count)
        if sent != count:
            raise OSError(errno.EIO, f"sendfile sent {sent} of {count} bytes")
        return
    out, fd = sock.fileno(), src.fileno()
    while count:
        try:
            sent = os.sendfile(out, fd, offset, count)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            data = os.pread(fd, count, offset)  # a file system sendfile cannot read
            if len(data) != count:
                raise OSError(errno.EIO, f"short read at {offset}: file changed") from exc
            sock.sendall(data)
            return
        if not sent:
            raise OSError(errno.EIO, f"the source ends before {offset + count}: it changed "
                                     "while being sent")
        offset += sent
        count -= sent


def _runs_held(reply: dict[str, Any], name: str) -> dict[int, tuple[int, bytes]]:
    """The runs of ``name`` the receiver already has: offset -> (length, checksum)."""
    try:
        return {int(o): (int(n), bytes.fromhex(c))
                for o, n, c in reply.get("done", {}).get(name, [])}
    except (TypeError, ValueError, AttributeError) as exc:
        raise P.ProtocolError(f"the receiver's list of runs is malformed: {exc}") from None


def _raise_for(reply: dict[str, Any]) -> None:
    if reply.get("ok"):
        return
    kind, error = reply.get("kind"), reply.get("error", "unknown error")
    if kind == "auth":
        raise TransferAuthError(f"receiver refused the transfer: {error}")
    if kind == "integrity":
        raise TransferIntegrityError(f"receiver rejected data: {error}")
    raise DiskTransferError(f"receiver refused the transfer: {error}")


class _Prefetch:
    """A file's :func:`scan_runs` started on a thread of its own before the receiver
    has answered (its answer is needed only to skip the runs it already has), at
    most :data:`PREFETCH_BYTES` of run heads ahead.  Whoever iterates it takes the
    scan over: the thread stops at its next list of runs, the lists it found are
    yielded, and the same scan goes on in the iterating thread.  One thread then
    finds, checksums and batches each run (for many small runs, handing each one
    from thread to thread cost the sender as much CPU as finding them: every
    ``lseek`` and ``pread`` gives the GIL away).  Runs travel in lists, so the lock
    is taken once per list, not once per run.  :meth:`close` stops the thread; it
    must come before the file is closed."""

    def __init__(self, runs: Iterator[ScannedRun], budget: int = PREFETCH_BYTES) -> None:
        self._runs = runs
        self._budget = budget
        self._ready: collections.deque[list[ScannedRun]] = collections.deque()
        self._held = 0
        self._cond = threading.Condition()
        self._stopped = False  # closed, or taken over by the iterating thread
        self._exhausted = False  # the scan itself ended (or failed)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._scan, daemon=True)
        self._thread.start()

    def _push(self, chunk: list[ScannedRun], nbytes: int) -> bool:
        """Hand a list over; False once the thread is to stop (the list is kept)."""
        with self._cond:
            while self._held >= self._budget and not self._stopped:
                self._cond.wait()
            self._ready.append(chunk)
            self._held += nbytes
            self._cond.notify_all()
            return not self._stopped

    def _scan(self) -> None:
        chunk: list[ScannedRun] = []
        nbytes = 0
        try:
            for run in self._runs:
                chunk.append(run)
                nbytes += len(run.head)
                if len(chunk) >= 256 or nbytes >= 1 << 20:
                    if not self._push(chunk, nbytes):
                        return  # taken over (or closed) between two runs
                    chunk, nbytes = [], 0
                elif self._stopped:
                    self._push(chunk, nbytes)
                    return
            self._exhausted = True
        except BaseException as exc:  # noqa: BLE001 - raised to whoever iterates
            self._error = exc  # after the runs found before it
            self._exhausted = True
        if chunk:
            self._push(chunk, nbytes)

    def __iter__(self) -> Iterator[ScannedRun]:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()
        while self._ready:
            yield from self._ready.popleft()
        if self._error is not None:
            raise self._error
        if not self._exhausted:
            yield from self._runs

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()


class StreamSender:
    """Sends ``files`` to the receiver named in ``ticket`` (one call of :meth:`run`)."""

    def __init__(self, files: list[SendFile], ticket: dict[str, Any], opts: SenderOptions,
                 meter: ProgressMeter) -> None:
        if opts.checksum not in CHECKSUMS:
            raise DiskTransferError(f"unknown checksum {opts.checksum!r}")
        self.files = files
        self.ticket = ticket
        self.opts = opts
        self.meter = meter
        self.chooser = CompressionChooser(opts.compression, opts.level)
        self.resumed_bytes = 0
        self.wire_total = 0
        #: set by _pump: raw runs go by sendfile (not over TLS)
        self._zero_copy = False
        #: file index -> its scan, started before the receiver answered
        self._prefetch: dict[int, _Prefetch] = {}

    def run(self) -> list[SentFile]:
        """Send everything, reconnecting (and resuming) after dropped connections up
        to ``retries`` times.  Auth and integrity refusals are raised at once."""
        attempt = 0
        while True:
            try:
                return self._session()
            except (TransferAuthError, TransferIntegrityError):
                raise
            except (OSError, P.ProtocolError, DiskTransferError) as exc:
                attempt += 1
                if attempt > self.opts.retries:
                    if isinstance(exc, DiskTransferError):
                        raise
                    raise DiskTransferError(f"stream transfer failed: {exc}") from exc
                time.sleep(min(2.0, 0.2 * attempt))

    def _hello(self, sock: socket.socket, sizes: list[int]) -> dict[str, Any]:
        """Authenticate, then offer the files; returns the receiver's answer (the runs
        it already has)."""
        sock.sendall(P.MAGIC)
        P.send_message(sock, {"token": self.ticket["token"],
                              "transfer_id": self.ticket["transfer_id"]})
        _raise_for(P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH))
        P.send_message(sock, {
            "checksum": self.opts.checksum,
            "files": [{"name": f.name, "size": s} for f, s in zip(self.files, sizes,
                                                                     strict=True)],
        })
        reply = P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH)
        _raise_for(reply)
        return reply

    def _session(self) -> list[SentFile]:
        handles = [open(f.path, "rb") for f in self.files]  # noqa: SIM115 - closed below
        self._prefetch = {}
        try:
            sizes = [h.seek(0, 2) for h in handles]
            if not self.ticket.get("tls") and self.opts.compression != "on":
                # the files sent first are scanned while the receiver answers
                for i in range(min(len(handles), self.opts.parallel_files)):
                    self._prefetch[i] = _Prefetch(scan_runs(
                        handles[i].fileno(), sizes[i], self.opts.checksum, keep=SMALL_RUN))
            sock = _connect(self.ticket, self.opts)
            try:
                reply = self._hello(sock, sizes)
                states = []
                for i, (f, size) in enumerate(zip(self.files, sizes, strict=True)):
                    done = _runs_held(reply, f.name)
                    states.append(_FileState(i, f, size, DigestBuilder(size, self.opts.checksum),
                                             done, SentFile(name=f.name, size=size,
                                                            backing_file=backing_file_of(f.path))))
                self._pump(sock, handles, states)
                self.resumed_bytes = sum(s.resumed for s in states)
                sock.sendall(P.FRAME.pack(P.DONE, 0, 0, 0, 0, 0)
                             + bytes(CHECKSUMS[self.opts.checksum][1]))
                _raise_for(P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH))
                return [s.sent for s in states]
            except OSError:
                refusal = _error_reply(sock)
                if refusal is not None and refusal.get("kind") in ("auth", "integrity"):
                    _raise_for(refusal)
                raise
            finally:
                sock.close()
        finally:
            for scan in self._prefetch.values():
                scan.close()
            for h in handles:
                h.close()

    def _pump(self, sock: socket.socket, handles: list[Any], states: list[_FileState]) -> None:
        frames: queue.Queue[Any] = queue.Queue(maxsize=8)
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.opts.parallel_files)
        self._zero_copy = not isinstance(sock, ssl.SSLSocket)
        futures = [pool.submit(self._produce, handles[s.index].fileno(), s, frames, stop)
                   for s in states]
        pending = len(futures)
        try:
            while pending:
                item = frames.get()
                if item is _END:
                    pending -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                state, header, payload, step, release = item
                if header:
                    t0 = time.perf_counter()
                    if payload is None:
                        # raw run: the kernel sends it straight from the page cache
                        _kind, _flags, _i, offset, raw_len, _n = P.FRAME.unpack_from(header)
                        sock.sendall(header, socket.MSG_MORE)
                        _sendfile(sock, handles[state.index], offset, raw_len)
                        wire = len(header) + raw_len
                    else:
                        sock.sendall(header)
                        sock.sendall(payload)
                        wire = len(header) + len(payload)
                    self.chooser.observe_link(wire, time.perf_counter() - t0)
                    state.sent.bytes_on_wire += wire
                    self.wire_total += wire
                    if self.opts.on_wire is not None:
                        self.opts.on_wire(self.wire_total)
                if step:
                    self.meter.add(step, state.send.name)
                if release is not None:  # every frame that pointed into it is sent
                    release[0].put(release[1])
        finally:
            stop.set()
            while True:  # unblock producers waiting on a full queue
                try:
                    frames.get_nowait()
                except queue.Empty:
                    if all(f.done() for f in futures):
                        break
                    time.sleep(0.01)
            pool.shutdown(wait=True)

    def _produce(self, fd: int, state: _FileState, frames: queue.Queue[Any],
                 stop: threading.Event) -> None:
        try:
            self._produce_runs(fd, state, frames, stop)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the sending thread
            frames.put(exc)
        finally:
            frames.put(_END)

    def _produce_runs(self, fd: int, state: _FileState, frames: queue.Queue[Any],
                      stop: threading.Event) -> None:
        fn, _size = CHECKSUMS[self.opts.checksum]
        cctx = zstandard.ZstdCompressor(level=self.opts.level)
        batch = _Batch(state, fn, self.chooser, cctx)
        if self._zero_copy and self.opts.compression != "on":
            pos = self._scan_runs(fd, state, frames, stop, cctx, batch)
        else:
            pos = self._read_runs(fd, state, frames, stop, fn, cctx, batch)
        if batch.entries:
            frames.put(batch.frame())
        state.sent.digest = state.digest.hexdigest()
        state.sent.seconds = time.monotonic() - state.started
        info = json.dumps({"digest": state.sent.digest, "bytes_sent": state.sent.bytes_sent,
                           "seconds": state.sent.seconds,
                           "backing_file": state.sent.backing_file}).encode()
        header = P.FRAME.pack(P.FILE_DONE, 0, state.index, state.size, 0, len(info)) \
            + bytes(CHECKSUMS[self.opts.checksum][1])
        frames.put((state, header, info, state.size - pos + batch.take_step(), None))

    def _scan_runs(self, fd: int, state: _FileState, frames: queue.Queue[Any],
                   stop: threading.Event, cctx: zstandard.ZstdCompressor,
                   batch: _Batch) -> int:
        """Queue the runs of a file whose raw runs go by sendfile: they are found and
        hashed from small pieces (:func:`scan_runs`) and never held in memory; only a
        run that is compressed is read again.  Returns the offset progress reached."""
        pos = 0  # bytes of the file accounted for in progress (holes included)
        runs = self._prefetch.get(state.index) or scan_runs(fd, state.size, self.opts.checksum,
                                                            keep=SMALL_RUN)
        for run in runs:
            if stop.is_set():
                raise _Stopped
            step, pos = run.offset + run.length - pos, run.offset + run.length
            state.digest.add(run.offset, run.length, run.digest)
            if state.done.get(run.offset) == (run.length, run.digest):
                state.resumed += run.length
                batch.step += step
                continue
            state.sent.bytes_sent += run.length
            if run.length < SMALL_RUN:  # its head is all of it
                batch.add(run.offset, run.head, run.digest, step)
                if batch.full():
                    frames.put(batch.frame())
                continue
            if batch.entries:
                frames.put(batch.frame())
            body = None
            if self.chooser.wants(run.head, run.length, cctx):
                data = os.pread(fd, run.length, run.offset)
                if len(data) != run.length:
                    raise OSError(errno.EIO, f"short read at {run.offset}: file changed")
                body = self.chooser.compress(data, cctx)
            header = P.FRAME.pack(P.DATA, P.COMPRESSED if body is not None else 0,
                                  state.index, run.offset, run.length,
                                  run.length if body is None else len(body)) + run.digest
            frames.put((state, header, body, step + batch.take_step(), None))
        return pos

    def _read_runs(self, fd: int, state: _FileState, frames: queue.Queue[Any],
                   stop: threading.Event, fn: Any, cctx: zstandard.ZstdCompressor,
                   batch: _Batch) -> int:
        """Queue the runs of a file read whole into reused buffers (TLS, or
        compression ``on``).  Returns the offset progress reached."""
        free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(READ_BUFFERS):
            free.put(bytearray(CHUNK))

        def next_buffer() -> bytearray:
            """A read buffer the sending thread is done with (raises _Stopped once
            it gave up)."""
            while True:
                try:
                    return free.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        raise _Stopped from None

        pos = 0  # bytes of the file accounted for in progress (holes included)
        for start, buf, length in read_spans_into(fd, state.size, next_buffer):
            if stop.is_set():
                raise _Stopped
            for run in runs_in(start, buf, length):
                raw_len = len(run.data)
                digest = fn(run.data)
                state.digest.add(run.offset, raw_len, digest)
                step, pos = run.offset + raw_len - pos, run.offset + raw_len
                if state.done.get(run.offset) == (raw_len, digest):
                    state.resumed += raw_len
                    batch.step += step
                    continue
                state.sent.bytes_sent += raw_len
                if raw_len < SMALL_RUN:  # many small runs travel together in one frame
                    batch.add(run.offset, run.data, digest, step)
                    if batch.full():
                        frames.put(batch.frame())
                    continue
                if batch.entries:
                    frames.put(batch.frame())
                payload = self.chooser.maybe_compress(run.data, cctx)
                flags = P.COMPRESSED if payload is not None else 0
                body = payload if payload is not None else run.data
                header = P.FRAME.pack(P.DATA, flags, state.index, run.offset, raw_len,
                                      len(body)) + digest
                frames.put((state, header, body, step + batch.take_step(), None))
            span_end = start + length
            if span_end > pos:
                batch.step += span_end - pos
                pos = span_end
            frames.put((state, b"", b"", 0, (free, buf)))  # buffer back once sent
        return pos


class _Batch:
    """Small runs of one file collected into one BATCH frame (see protocol)."""

    def __init__(self, state: _FileState, fn: Any, chooser: CompressionChooser,
                 cctx: zstandard.ZstdCompressor) -> None:
        self.state = state
        self.fn = fn
        self.chooser = chooser
        self.cctx = cctx
        self.entries: list[bytes] = []
        self.data: list[bytes] = []
        self.size = 0
        self.step = 0

    def add(self, offset: int, data: bytes | memoryview, digest: bytes, step: int) -> None:
        self.entries.append(P.BATCH_ENTRY.pack(offset, len(data)) + digest)
        self.data.append(bytes(data))
        self.size += len(data)
        self.step += step

    def full(self) -> bool:
        return self.size >= BATCH_BYTES or len(self.entries) >= P.MAX_BATCH

    def take_step(self) -> int:
        step, self.step = self.step, 0
        return step

    def frame(self) -> tuple[Any, ...]:
        payload = b"".join(self.entries) + b"".join(self.data)
        compressed = self.chooser.maybe_compress(memoryview(payload), self.cctx)
        body = compressed if compressed is not None else payload
        header = P.FRAME.pack(P.BATCH, P.COMPRESSED if compressed is not None else 0,
                              self.state.index, len(self.entries), len(payload),
                              len(body)) + self.fn(payload)
        self.entries, self.data, self.size = [], [], 0
        return (self.state, header, body, self.take_step(), None)


class _Stopped(Exception):
    """The sending thread gave up; a reader waiting for a buffer stops."""


def _error_reply(sock: socket.socket) -> dict[str, Any] | None:
    """After a failed write: the receiver's error message, if it sent one."""
    try:
        sock.shutdown(socket.SHUT_WR)  # the receiver sees the end and answers at once
    except OSError:
        pass
    try:
        sock.settimeout(2.0)
        return P.recv_message(sock, P.MAX_REPLY, P.REPLY_DEPTH)
    except (OSError, P.ProtocolError, ValueError):
        return None
