"""The ``stream`` receiver: a short-lived process on the destination host.

Started by :meth:`virtsdk.transfer.stream.StreamTransport.prepare_receive` as
``[*exec_prefix, python, -m, virtsdk.transfer.receiver, ...]`` (so in the lab it
listens inside the destination's network namespace).  It reads the one-time token
from stdin, listens on ``--listen`` (port 0: any), prints ``{"port": N, "pid": P}``
on stdout and then serves one authenticated sender connection at a time until a
transfer completes.  Guarantees:

* before the token is checked a connection may send only the magic and a small flat
  hello (:mod:`virtsdk.transfer.protocol`), within one deadline for the whole
  handshake (``--handshake-timeout``); at most ``--max-handshakes`` connections are
  in that state at once (the oldest is dropped for a newcomer), each on a thread of
  its own, so no unauthenticated peer can hold up the sender, grow the receiver or
  make it exit;
* a connection with a wrong token is refused (and the receiver keeps waiting); the
  token is compared in constant time;
* every field of every message and frame header is checked for type and range; a
  malformed one gets an ``invalid`` reply and nothing of it is written;
* a newly authenticated connection replaces a session still open (the sender
  reconnected after a network drop the receiver has not noticed yet);
* every name is confined to ``--dest-dir``; existing files are never overwritten;
* every data frame is checked against its checksum before it is written; a bad frame
  ends the connection with an ``integrity`` error and nothing of it is written;
* completed runs go to a journal, so a new connection resumes where the last stopped,
  and a receiver restarted for the same transfer (``--resume``) picks the journal up
  again, keeping only the runs whose data on disk still matches their checksum;
* it exits once the transfer is complete (or after ``--idle-timeout`` seconds
  without an authenticated sender, or on SIGTERM, or when its parent dies), leaving
  its outcome in the transfer's state record (:mod:`virtsdk.transfer.state`).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import hmac
import os
import queue
import resource
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zstandard

from virtsdk.exceptions import Invalid
from virtsdk.transfer import protocol as P
from virtsdk.transfer import state as xstate
from virtsdk.transfer.extents import CHECKSUMS, DigestBuilder, allocated_bytes, checksum_function
from virtsdk.transfer.names import confine_name
from virtsdk.transfer.schema import BadMessage, validate

_JOURNAL = struct.Struct(">IQI")
#: Seconds a new connection has, in all, to finish TLS, magic and hello.
HANDSHAKE_TIMEOUT = 10.0
#: Connections that may be in their handshake at once.
MAX_HANDSHAKES = 16
#: Longest name component a file system takes (bytes).
NAME_MAX = 255
#: Bytes of a file received between two starts of its writeback.
WRITEBACK_STEP = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2


class SessionError(Exception):
    """Ends one sender connection with an error message of ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass
class IncomingFile:
    name: str
    size: int
    path: str
    fd: int
    digest: DigestBuilder
    done: dict[str, Any] | None = None
    bytes_written: int = 0
    #: bytes written since writeback was last started
    unsynced: int = 0


def _shutdown_fd(fd: int, family: int, how: int = socket.SHUT_RDWR) -> None:
    """Shut a socket down by file descriptor (wakes a thread blocked on it, also
    inside a TLS handshake that owns the socket object)."""
    try:
        dup = socket.fromfd(fd, family, socket.SOCK_STREAM)
    except OSError:
        return
    try:
        dup.shutdown(how)
    except OSError:
        pass
    finally:
        dup.close()


class _Gate:
    """The connections still in their handshake: at most ``limit`` at once (admitting
    one more drops the oldest) and none past its deadline (:meth:`reap`).  A
    connection leaves with :meth:`release`, which must happen before it is closed
    (so a descriptor is never shut down after it was reused)."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[float, int, int]] = {}  # key -> deadline, fd, family
        self._next = 0

    def admit(self, conn: socket.socket) -> int:
        with self._lock:
            while len(self._pending) >= self.limit:
                oldest = min(self._pending, key=lambda k: self._pending[k][0])
                _deadline, fd, family = self._pending.pop(oldest)
                _shutdown_fd(fd, family)
            self._next += 1
            self._pending[self._next] = (time.monotonic() + self.timeout, conn.fileno(),
                                         conn.family)
            return self._next

    def release(self, key: int) -> bool:
        """Take ``key`` out of the gate; False if it was dropped already."""
        with self._lock:
            return self._pending.pop(key, None) is not None

    def reap(self) -> float:
        """Shut down every connection past its deadline; seconds to the next one."""
        now = time.monotonic()
        with self._lock:
            for key, (deadline, fd, family) in list(self._pending.items()):
                if deadline <= now:
                    del self._pending[key]
                    _shutdown_fd(fd, family)
            return min((d for d, _fd, _fam in self._pending.values()), default=now + 1.0) - now

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


@dataclass
class Receiver:
    """Receives one transfer into ``dest_dir`` (see the module docstring)."""

    dest_dir: str
    transfer_id: str
    token: str
    tls: ssl.SSLContext | None = None
    idle_timeout: float = 600.0
    files: list[IncomingFile] = field(default_factory=list)
    checksum: str = ""
    journal_fd: int = -1
    fsync: bool = True
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    max_handshakes: int = MAX_HANDSHAKES
    #: authenticated connections waiting for the session loop
    _ready: queue.Queue[socket.socket] = field(default_factory=queue.Queue, init=False)
    #: (fd, family) of the connection a session is serving
    _active: tuple[int, int] | None = field(default=None, init=False)
    _active_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _gate: _Gate = field(init=False)

    def __post_init__(self) -> None:
        self._gate = _Gate(self.max_handshakes, self.handshake_timeout)

    # -- state ---------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        return xstate.read_state(self.dest_dir, self.transfer_id) or {
            "transport": "stream", "created": [], "files": [], "complete": False, "error": ""}

    def _set_error(self, message: str) -> None:
        record = self._record()
        record["error"] = message
        xstate.write_state(self.dest_dir, self.transfer_id, record)

    def _open_files(self, offer: dict[str, Any]) -> None:
        """First session: create the files.  Later sessions must name the same ones.
        ``offer`` is valid against :data:`protocol.OFFER`; a failure here leaves
        nothing behind (what this call created is removed again)."""
        wanted = [(f["name"], f["size"]) for f in offer["files"]]
        checksum = offer["checksum"]
        if self.files:
            have = [(f.name, f.size) for f in self.files]
            if wanted != have or checksum != self.checksum:
                raise SessionError("invalid", "a resumed transfer must send the same files")
            return
        try:
            paths = [_destination(self.dest_dir, name) for name, _ in wanted]
        except Invalid as exc:
            raise SessionError("invalid", str(exc)) from None
        if len(set(paths)) != len(paths):
            raise SessionError("invalid", "the same destination name twice")
        existing = [name for (name, _), path in zip(wanted, paths, strict=True)
                    if os.path.lexists(path)]
        if existing:
            raise SessionError("invalid", f"{', '.join(existing)} already exists on the "
                                          "destination; refusing to overwrite")
        record = self._record()
        record.update(created=[], created_dirs=[], sizes=[size for _, size in wanted],
                      checksum=checksum)
        try:
            for (name, size), path in zip(wanted, paths, strict=True):
                record["created_dirs"] += xstate.make_parents(self.dest_dir, path)
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    raise SessionError("invalid", f"{name} already exists on the "
                                                  "destination") from None
                # recorded only once it is ours, so a cancel never deletes a file it found
                record["created"].append(name)
                xstate.write_state(self.dest_dir, self.transfer_id, record)
                self.files.append(IncomingFile(name, size, path, fd,
                                               DigestBuilder(size, checksum)))
                try:
                    os.ftruncate(fd, size)
                except OSError as exc:
                    raise SessionError("invalid", f"cannot make {name} {size} bytes long: "
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
        """Remove what a failed :meth:`_open_files` created (files, then directories)."""
        for f in self.files:
            os.close(f.fd)
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
        record = self._record()
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

    def _done_map(self) -> dict[str, list[list[Any]]]:
        return {f.name: [[off, length, digest.hex()]
                         for off, (length, digest) in sorted(f.digest.entries.items())]
                for f in self.files}

    # -- before authentication -----------------------------------------------------------

    def handshake(self, conn: socket.socket) -> None:
        """Handshake thread: TLS, magic, hello, token; an authenticated connection is
        queued for :meth:`serve`, anything else is answered (if it got that far) and
        closed.  The deadline is enforced by the gate, which shuts the socket down."""
        if self._stopping.is_set():
            conn.close()
            return
        key = self._gate.admit(conn)
        handed_over = False
        try:
            conn.settimeout(self.handshake_timeout)
            if self.tls is not None:  # handshake below, so that only we close the socket
                conn = self.tls.wrap_socket(conn, server_side=True,
                                            do_handshake_on_connect=False)
                conn.do_handshake()
            try:
                self._authenticate(conn)
            except SessionError as exc:
                _reply_error(conn, exc.kind, str(exc))
                return
            except (P.ProtocolError, BadMessage) as exc:
                _reply_error(conn, "invalid", str(exc))
                return
            if not self._gate.release(key):
                return  # its deadline passed or a newer connection displaced it
            P.send_message(conn, {"ok": True})
            if isinstance(conn, ssl.SSLSocket):
                conn.settimeout(self.idle_timeout)
            else:  # kernel-side timeouts: no poll() before every read
                P.blocking_with_timeout(conn, self.idle_timeout)
            self._hand_over(conn)
            handed_over = True
        except (OSError, ssl.SSLError, ValueError):
            pass  # the peer went away, or its deadline shut the socket down
        except Exception:  # noqa: BLE001 - an unexpected peer must never end the receiver
            sys.stderr.write(f"handshake failed:\n{traceback.format_exc()}")
        finally:
            if not handed_over:
                self._gate.release(key)
                conn.close()

    def _authenticate(self, conn: socket.socket) -> None:
        if P.recv_exact(conn, len(P.MAGIC)) != P.MAGIC:
            raise SessionError("invalid", "not a virtsdk transfer client (or another version)")
        hello = validate(P.recv_message(conn, P.MAX_HELLO, P.HELLO_DEPTH), P.HELLO, "hello")
        token_ok = hmac.compare_digest(hello["token"].encode(), self.token.encode())
        id_ok = hmac.compare_digest(hello["transfer_id"].encode(), self.transfer_id.encode())
        if not (token_ok and id_ok):
            raise SessionError("auth", "wrong token or transfer id")

    def _hand_over(self, conn: socket.socket) -> None:
        """Queue an authenticated connection for :meth:`serve`.  It ends the session
        still open, if any (its sender gave up on it and reconnected); that happens
        under the lock :meth:`_serve_one` takes, so it never hits ``conn`` itself."""
        with self._active_lock:
            if self._active is not None:
                _shutdown_fd(*self._active)
            self._ready.put(conn)

    def _accept(self, server: socket.socket) -> None:
        """Acceptor thread: one handshake thread per connection; enforces deadlines."""
        while not self._stopping.is_set():
            server.settimeout(max(0.01, min(1.0, self._gate.reap())))
            try:
                conn, _addr = server.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)  # e.g. EMFILE: let handshakes finish
                continue
            threading.Thread(target=self.handshake, args=(conn,), daemon=True).start()

    # -- one authenticated connection ----------------------------------------------------

    def session(self, conn: socket.socket) -> bool:
        """Serve one authenticated sender; True once the transfer is complete."""
        offer = validate(P.recv_message(conn, P.MAX_MESSAGE, P.OFFER_DEPTH), P.OFFER, "offer")
        self._open_files(offer)
        for f in self.files:
            f.done = None  # every session confirms every file again
        P.send_message(conn, {"ok": True, "done": self._done_map()})
        csize = CHECKSUMS[self.checksum][1]
        header = bytearray(P.FRAME.size + csize)
        hview = memoryview(header)
        # a frame the writer refuses wakes the reading below, so the refusal is
        # answered at once (not when the next frame comes)
        fd, family = conn.fileno(), conn.family
        writer = _Writer(self, lambda: _shutdown_fd(fd, family, socket.SHUT_RD))
        try:
            while True:
                P.recv_into_exact(conn, hview)
                kind, flags, index, offset, raw_len, payload_len = P.FRAME.unpack_from(header)
                expected = bytes(hview[P.FRAME.size:])
                self._check_frame(kind, flags, index, offset, raw_len, payload_len)
                if kind == P.DONE:
                    writer.drain()
                    sent = self._verify_and_sync()
                    try:  # the data is safe whether or not the sender hears it
                        P.send_message(conn, {"ok": True,
                                              "files": [f.done for f in self.files]})
                    except (OSError, ssl.SSLError):
                        pass
                    self._record_complete(sent)
                    return True
                if kind == P.FILE_DONE:
                    info = validate(P.decode(P.recv_exact(conn, payload_len), P.INFO_DEPTH),
                                    P.FILE_DONE_INFO, "end-of-file record")
                    self.files[index].done = info  # no more data for it in this session
                    writer.submit((kind, index, info))
                    continue
                buf = writer.buffer()
                payload = memoryview(buf)[:payload_len]
                P.recv_into_exact(conn, payload)
                writer.submit((kind, flags, index, offset, raw_len, expected, buf, payload_len))
        except (P.ProtocolError, OSError):
            writer.stop()
            writer.check()  # the writer's refusal is what ended the reading
            raise
        finally:
            writer.stop()

    def _check_frame(self, kind: int, flags: int, index: int, offset: int, raw_len: int,
                     payload_len: int) -> None:
        """Refuse a frame header whose fields are out of range (before its payload is
        read)."""
        def bad(why: str) -> SessionError:
            return SessionError("invalid", f"bad frame (type {kind}, file {index}, offset "
                                           f"{offset}): {why}")

        if kind == P.DONE:
            if flags or index or offset or raw_len or payload_len:
                raise bad("DONE carries nothing")
            return
        if kind not in (P.DATA, P.FILE_DONE, P.BATCH):
            raise bad("unknown frame type")
        if index >= len(self.files):
            raise bad(f"there are {len(self.files)} files")
        f = self.files[index]
        if f.done is not None:
            raise bad(f"{f.name} was already declared complete")
        if kind == P.FILE_DONE:
            if flags or raw_len or offset != f.size or not 0 < payload_len <= P.MAX_MESSAGE:
                raise bad("FILE_DONE carries the file size and a short record")
            return
        if flags & ~P.COMPRESSED:
            raise bad(f"unknown flags {flags:#x}")
        if not 0 < raw_len <= P.MAX_PAYLOAD or not 0 < payload_len <= P.MAX_PAYLOAD:
            raise bad(f"lengths must be 1..{P.MAX_PAYLOAD}")
        if not flags & P.COMPRESSED and payload_len != raw_len:
            raise bad("an uncompressed payload must be as long as its data")
        if kind == P.DATA and offset + raw_len > f.size:
            raise bad(f"run beyond the end of {f.name}")
        if kind == P.BATCH and (not 0 < offset <= P.MAX_BATCH
                                or offset * (P.BATCH_ENTRY.size + CHECKSUMS[self.checksum][1])
                                > raw_len):
            raise bad(f"a batch holds 1..{P.MAX_BATCH} runs and their table")

    def write_frame(self, frame: tuple[Any, ...], dctx: zstandard.ZstdDecompressor) -> None:
        """Writer thread: verify one frame and write it (nothing is written unless the
        checksum matches)."""
        if frame[0] == P.FILE_DONE:
            _kind, index, info = frame
            f = self.files[index]
            if info["digest"] != f.digest.hexdigest():
                raise SessionError("integrity", f"{f.name}: file digest mismatch "
                                                "(runs missing?)")
            return
        kind, flags, index, offset, raw_len, expected, buf, payload_len = frame
        f = self.files[index]
        payload = memoryview(buf)[:payload_len]
        data: bytes | memoryview = payload
        if flags & P.COMPRESSED:
            try:
                data = dctx.decompress(payload, max_output_size=raw_len)
            except zstandard.ZstdError as exc:
                raise SessionError("integrity", f"{f.name}@{offset}: {exc}") from exc
        if len(data) != raw_len or self.checksum_fn(data) != expected:
            what = "a batch of runs" if kind == P.BATCH else f"the run at {offset}"
            raise SessionError("integrity", f"{f.name}: checksum mismatch in {what}")
        if kind == P.BATCH:
            self._write_batch(f, index, offset, memoryview(data))
            return
        os.pwrite(f.fd, data, offset)
        f.bytes_written += raw_len
        f.digest.add(offset, raw_len, expected)
        os.write(self.journal_fd, _JOURNAL.pack(index, offset, raw_len) + expected)
        self._written(f, raw_len)

    def _written(self, f: IncomingFile, nbytes: int) -> None:
        """Start writing back what arrived every :data:`WRITEBACK_STEP` bytes, so that
        the disk works while the network does and the fsync at the end only waits
        for the tail (without it the whole file would be written back then)."""
        f.unsynced += nbytes
        if self.fsync and f.unsynced >= WRITEBACK_STEP:
            f.unsynced = 0
            _start_writeback(f.fd)

    def _write_batch(self, f: IncomingFile, index: int, count: int, data: memoryview) -> None:
        """Check every run of a (checksum-verified) BATCH payload, then write them all."""
        csize = CHECKSUMS[self.checksum][1]
        esize = P.BATCH_ENTRY.size + csize
        pos = count * esize
        runs = []
        for i in range(count):
            offset, length = P.BATCH_ENTRY.unpack_from(data, i * esize)
            digest = bytes(data[i * esize + P.BATCH_ENTRY.size:(i + 1) * esize])
            chunk = data[pos:pos + length]
            pos += length
            if not length or len(chunk) != length or offset + length > f.size:
                raise SessionError("invalid", f"{f.name}: run {i} of a batch is out of range")
            if self.checksum_fn(chunk) != digest:
                raise SessionError("integrity", f"{f.name}: bad run {i} in a batch")
            runs.append((offset, chunk, digest))
        if pos != len(data):
            raise SessionError("invalid", f"{f.name}: batch payload has trailing bytes")
        journal = []
        for offset, chunk, digest in runs:
            os.pwrite(f.fd, chunk, offset)
            f.bytes_written += len(chunk)
            f.digest.add(offset, len(chunk), digest)
            journal.append(_JOURNAL.pack(index, offset, len(chunk)) + digest)
        os.write(self.journal_fd, b"".join(journal))
        self._written(f, len(data))

    @property
    def checksum_fn(self) -> Any:
        return checksum_function(self.checksum)

    def _verify_and_sync(self) -> list[dict[str, Any]]:
        """At DONE: every file confirmed, its data on stable storage; returns what the
        record lists for each (the fields of ``base.SentFile``, which is not imported:
        this process must start fast)."""
        missing = [f.name for f in self.files if f.done is None]
        if missing:
            raise SessionError("integrity", f"no end-of-file record for {missing}")
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

    def _record_complete(self, sent: list[dict[str, Any]]) -> None:
        """The last thing a receiver does: record the transfer complete and say so on
        stdout (``finish_receive`` wakes on that line instead of polling)."""
        record = self._record()
        record.update(files=sent, complete=True, error="")
        xstate.write_state(self.dest_dir, self.transfer_id, record)
        try:
            print('{"complete": true}', flush=True)
        except OSError:
            pass  # whoever started us is gone; the record says it all

    # -- main loop -----------------------------------------------------------------------

    def serve(self, server: socket.socket) -> int:
        """Serve authenticated senders one at a time until the transfer completes (0)
        or no authenticated sender came for ``idle_timeout`` seconds (2).  Connections
        are accepted and authenticated on other threads."""
        acceptor = threading.Thread(target=self._accept, args=(server,), daemon=True)
        acceptor.start()
        try:
            idle_until = time.monotonic() + self.idle_timeout
            while True:
                try:
                    conn = self._ready.get(timeout=max(0.0, idle_until - time.monotonic()))
                except queue.Empty:
                    self._set_error(f"no sender within {self.idle_timeout:.0f}s")
                    return 2
                if self._serve_one(conn):
                    return 0
                idle_until = time.monotonic() + self.idle_timeout
        finally:
            self._stopping.set()
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the acceptor
            except OSError:
                pass
            acceptor.join(5.0)

    def _serve_one(self, conn: socket.socket) -> bool:
        with self._active_lock:
            self._active = (conn.fileno(), conn.family)
        try:
            return self.session(conn)
        except SessionError as exc:
            _reply_error(conn, exc.kind, str(exc))
        except (P.ProtocolError, BadMessage) as exc:
            _reply_error(conn, "invalid", str(exc))
        except (OSError, ssl.SSLError) as exc:
            _reply_error(conn, "invalid", f"connection failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug must not abort the migration
            sys.stderr.write(f"session failed:\n{traceback.format_exc()}")
            _reply_error(conn, "invalid", f"receiver error ({type(exc).__name__})")
        finally:
            with self._active_lock:
                self._active = None
            conn.close()
        return False

    def close(self) -> None:
        for f in self.files:
            os.close(f.fd)
        self.files = []
        if self.journal_fd >= 0:
            os.close(self.journal_fd)
            self.journal_fd = -1


def _destination(dest_dir: str, name: str) -> str:
    """The confined path of an offered name (whose type and characters the schema
    already checked); also refuses components longer than the file system takes."""
    if any(len(part.encode()) > NAME_MAX for part in name.split("/")):
        raise Invalid(f"a component of {name[:80]!r} is longer than {NAME_MAX} bytes")
    return confine_name(dest_dir, name)


class _Writer:
    """Verifies and writes frames on a thread of its own while the next frame is
    being received (buffers come from a small pool, so memory stays bounded)."""

    def __init__(self, receiver: Receiver, on_error: Callable[[], None],
                 buffers: int = 3) -> None:
        self.receiver = receiver
        self.on_error = on_error
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(buffers):
            self.free.put(bytearray(P.MAX_PAYLOAD))
        self.frames: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        dctx = zstandard.ZstdDecompressor()
        while True:
            frame = self.frames.get()
            try:
                if frame is None:
                    return
                if self.error is None:
                    self.receiver.write_frame(frame, dctx)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                self.error = exc
                self.on_error()
            finally:
                if frame is not None and len(frame) > 6:
                    self.free.put(frame[6])
                self.frames.task_done()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def buffer(self) -> bytearray:
        self.check()
        buf = self.free.get()
        self.check()
        return buf

    def submit(self, frame: tuple[Any, ...]) -> None:
        self.frames.put(frame)

    def drain(self) -> None:
        self.frames.join()
        self.check()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.frames.put(None)
            self.thread.join()


def _reply_error(conn: socket.socket, kind: str, message: str) -> None:
    try:
        P.send_message(conn, {"ok": False, "kind": kind, "error": message})
    except (OSError, ssl.SSLError, ValueError):
        pass


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _start_writeback(fd: int) -> None:
    """``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``: start writing the file's
    dirty pages back without waiting for them (Linux; elsewhere a no-op)."""
    try:
        fn = _libc().sync_file_range
    except AttributeError:
        return
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the process that started us dies."""
    try:
        _libc().prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _on_sigterm(_sig: int, _frame: object) -> None:
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m virtsdk.transfer.receiver")
    parser.add_argument("--dest-dir", required=True)
    parser.add_argument("--transfer-id", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--idle-timeout", type=float, default=600.0)
    parser.add_argument("--handshake-timeout", type=float, default=HANDSHAKE_TIMEOUT,
                        help="seconds a connection has to authenticate, all steps together")
    parser.add_argument("--max-handshakes", type=int, default=MAX_HANDSHAKES,
                        help="connections authenticating at once (the oldest is dropped)")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue a transfer an earlier receiver started (journal)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="do not fsync the files before reporting them complete")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tls-ca")
    args = parser.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 3  # the parent died before we could ask to follow it
    token = sys.stdin.readline().strip()
    if len(token) < 16:
        print('{"error": "no token on stdin"}', flush=True)
        return 4
    tls = P.server_tls_context(args.tls_cert, args.tls_key, args.tls_ca) \
        if args.tls_cert else None
    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.listen, args.port))
    server.listen(64)
    receiver = Receiver(os.path.abspath(args.dest_dir), args.transfer_id, token, tls,
                        args.idle_timeout, fsync=not args.no_fsync,
                        handshake_timeout=args.handshake_timeout,
                        max_handshakes=max(1, args.max_handshakes))
    if args.resume:
        receiver.reload()
    print(f'{{"port": {server.getsockname()[1]}, "pid": {os.getpid()}}}', flush=True)
    started = time.monotonic()
    try:
        return receiver.serve(server)
    finally:
        receiver.close()
        server.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        sys.stderr.write(f"receiver {args.transfer_id} done after "
                         f"{time.monotonic() - started:.1f}s (cpu user {usage.ru_utime:.2f}s "
                         f"sys {usage.ru_stime:.2f}s)\n")


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is closed: skip the interpreter's teardown
