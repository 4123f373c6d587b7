"""The ``stream`` receiver: a short-lived process on the destination host.

Started by :meth:`virtsdk.transfer.stream.StreamTransport.prepare_receive` as
``[*exec_prefix, python, -m, virtsdk.transfer.receiver, ...]`` (so in the lab it
listens inside the destination's network namespace).  It reads the one-time token
from stdin, listens on ``--listen`` (port 0: any), prints ``{"port": N, "pid": P}``
on stdout and then serves one sender connection at a time until a transfer
completes.  Guarantees:

* a connection with a wrong token is refused (and the receiver keeps waiting);
* every name is confined to ``--dest-dir``; existing files are never overwritten;
* every data frame is checked against its checksum before it is written; a bad frame
  ends the connection with an ``integrity`` error and nothing of it is written;
* completed runs go to a journal, so a new connection resumes where the last stopped,
  and a receiver restarted for the same transfer (``--resume``) picks the journal up
  again, keeping only the runs whose data on disk still matches their checksum;
* it exits once the transfer is complete (or after ``--idle-timeout`` seconds
  without a sender, or on SIGTERM, or when its parent dies), leaving its outcome in
  the transfer's state record (:mod:`virtsdk.transfer.state`).
"""

from __future__ import annotations

import argparse
import ctypes
import hmac
import json
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
from dataclasses import dataclass, field
from typing import Any

import zstandard

from virtsdk.exceptions import Invalid
from virtsdk.transfer import protocol as P
from virtsdk.transfer import state as xstate
from virtsdk.transfer.base import SentFile, confine_name
from virtsdk.transfer.extents import CHECKSUMS, DigestBuilder, allocated_bytes, checksum_function

_JOURNAL = struct.Struct(">IQI")
#: Seconds a new connection has to authenticate (a silent peer cannot hold us up).
HANDSHAKE_TIMEOUT = 30.0


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

    # -- state ---------------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        return xstate.read_state(self.dest_dir, self.transfer_id) or {
            "transport": "stream", "created": [], "files": [], "complete": False, "error": ""}

    def _set_error(self, message: str) -> None:
        record = self._record()
        record["error"] = message
        xstate.write_state(self.dest_dir, self.transfer_id, record)

    def _open_files(self, hello: dict[str, Any]) -> None:
        """First session: create the files.  Later sessions must name the same ones."""
        wanted = [(str(f["name"]), int(f["size"])) for f in hello.get("files", [])]
        checksum = str(hello.get("checksum", ""))
        if checksum not in CHECKSUMS:
            raise SessionError("invalid", f"unknown checksum {checksum!r}")
        if self.files:
            have = [(f.name, f.size) for f in self.files]
            if wanted != have or checksum != self.checksum:
                raise SessionError("invalid", "a resumed transfer must send the same files")
            return
        if not wanted or any(size < 0 for _, size in wanted):
            raise SessionError("invalid", "no files or a negative size")
        try:
            paths = [confine_name(self.dest_dir, name) for name, _ in wanted]
        except Invalid as exc:
            raise SessionError("invalid", str(exc)) from exc
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
        self.checksum = checksum
        for (name, size), path in zip(wanted, paths, strict=True):
            record["created_dirs"] += xstate.make_parents(self.dest_dir, path)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise SessionError("invalid", f"{name} already exists on the destination") \
                    from None
            # recorded only once it is ours, so a cancel never deletes a file it found
            record["created"].append(name)
            xstate.write_state(self.dest_dir, self.transfer_id, record)
            os.ftruncate(fd, size)
            self.files.append(IncomingFile(name, size, path, fd, DigestBuilder(size, checksum)))
        work = xstate.work_dir(self.dest_dir, self.transfer_id)
        os.makedirs(work, exist_ok=True)
        self.journal_fd = os.open(os.path.join(work, "journal"),
                                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

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

    # -- one connection ------------------------------------------------------------------

    def session(self, conn: socket.socket) -> bool:
        """Serve one sender; True once the transfer is complete."""
        if P.recv_exact(conn, len(P.MAGIC)) != P.MAGIC:
            raise SessionError("invalid", "not a virtsdk transfer client")
        hello = P.recv_message(conn)
        if not hmac.compare_digest(str(hello.get("token", "")).encode(), self.token.encode()) \
                or hello.get("transfer_id") != self.transfer_id:
            raise SessionError("auth", "wrong token or transfer id")
        conn.settimeout(self.idle_timeout)
        self._open_files(hello)
        P.send_message(conn, {"ok": True, "done": self._done_map()})
        csize = CHECKSUMS[self.checksum][1]
        header = bytearray(P.FRAME.size + csize)
        hview = memoryview(header)
        writer = _Writer(self)
        try:
            while True:
                P.recv_into_exact(conn, hview)
                kind, flags, index, offset, raw_len, payload_len = P.FRAME.unpack_from(header)
                expected = bytes(hview[P.FRAME.size:])
                if kind == P.DONE:
                    writer.drain()
                    self._complete()
                    P.send_message(conn, {"ok": True, "files": [f.done for f in self.files]})
                    return True
                if index >= len(self.files) or payload_len > P.MAX_PAYLOAD \
                        or raw_len > P.MAX_PAYLOAD \
                        or kind not in (P.DATA, P.FILE_DONE, P.BATCH) \
                        or (kind == P.BATCH and not 0 < offset <= P.MAX_BATCH):
                    raise SessionError("invalid", f"bad frame header {kind, index, payload_len}")
                if kind == P.DATA and offset + raw_len > self.files[index].size:
                    raise SessionError("invalid", f"run beyond the end of {index} at {offset}")
                buf = writer.buffer()
                payload = memoryview(buf)[:payload_len]
                P.recv_into_exact(conn, payload)
                writer.submit((kind, flags, index, offset, raw_len, expected, buf, payload_len))
        finally:
            writer.stop()

    def write_frame(self, frame: tuple[Any, ...], dctx: zstandard.ZstdDecompressor) -> None:
        """Writer thread: verify one frame and write it (nothing is written unless the
        checksum matches)."""
        kind, flags, index, offset, raw_len, expected, buf, payload_len = frame
        f = self.files[index]
        payload = memoryview(buf)[:payload_len]
        if kind == P.FILE_DONE:
            self._file_done(f, json.loads(bytes(payload)))
            return
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

    def _write_batch(self, f: IncomingFile, index: int, count: int, data: memoryview) -> None:
        """Check every run of a (verified) BATCH payload, then write them all."""
        csize = CHECKSUMS[self.checksum][1]
        esize = P.BATCH_ENTRY.size + csize
        pos = count * esize
        runs = []
        for i in range(count):
            offset, length = P.BATCH_ENTRY.unpack_from(data, i * esize)
            digest = bytes(data[i * esize + P.BATCH_ENTRY.size:(i + 1) * esize])
            chunk = data[pos:pos + length]
            pos += length
            if len(chunk) != length or offset + length > f.size \
                    or self.checksum_fn(chunk) != digest:
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

    @property
    def checksum_fn(self) -> Any:
        return checksum_function(self.checksum)

    def _file_done(self, f: IncomingFile, info: dict[str, Any]) -> None:
        if info.get("digest") != f.digest.hexdigest():
            raise SessionError("integrity", f"{f.name}: file digest mismatch (runs missing?)")
        f.done = info

    def _complete(self) -> None:
        missing = [f.name for f in self.files if f.done is None]
        if missing:
            raise SessionError("integrity", f"no end-of-file record for {missing}")
        sent = []
        for f in self.files:
            if self.fsync:
                os.fsync(f.fd)
            info = f.done or {}
            sent.append(SentFile(name=f.name, size=f.size,
                                 bytes_sent=int(info.get("bytes_sent", 0)),
                                 bytes_on_wire=int(info.get("bytes_on_wire", 0)),
                                 digest=f.digest.hexdigest(),
                                 seconds=float(info.get("seconds", 0.0)),
                                 backing_file=info.get("backing_file")).to_primitive())
            info["allocated"] = allocated_bytes(f.path)
        record = self._record()
        record.update(files=sent, complete=True, error="")
        xstate.write_state(self.dest_dir, self.transfer_id, record)

    # -- main loop -----------------------------------------------------------------------

    def serve(self, server: socket.socket) -> int:
        """Accept senders until the transfer completes (0) or nobody came (2)."""
        server.settimeout(self.idle_timeout)
        while True:
            try:
                conn, _addr = server.accept()
            except TimeoutError:
                self._set_error(f"no sender within {self.idle_timeout:.0f}s")
                return 2
            try:
                conn.settimeout(min(self.idle_timeout, HANDSHAKE_TIMEOUT))
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                if self.session(conn):
                    return 0
            except SessionError as exc:
                _reply_error(conn, exc.kind, str(exc))
            except (P.ProtocolError, OSError, ValueError, ssl.SSLError) as exc:
                _reply_error(conn, "invalid", f"connection failed: {exc}")
            finally:
                conn.close()

    def close(self) -> None:
        for f in self.files:
            os.close(f.fd)
        self.files = []
        if self.journal_fd >= 0:
            os.close(self.journal_fd)
            self.journal_fd = -1


class _Writer:
    """Verifies and writes frames on a thread of its own while the next frame is
    being received (buffers come from a small pool, so memory stays bounded)."""

    def __init__(self, receiver: Receiver, buffers: int = 3) -> None:
        self.receiver = receiver
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
            finally:
                if frame is not None:
                    self.free.put(frame[6])
                self.frames.task_done()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def buffer(self) -> bytearray:
        self._check()
        buf = self.free.get()
        self._check()
        return buf

    def submit(self, frame: tuple[Any, ...]) -> None:
        self.frames.put(frame)

    def drain(self) -> None:
        self.frames.join()
        self._check()

    def stop(self) -> None:
        self.frames.put(None)
        self.thread.join()


def _reply_error(conn: socket.socket, kind: str, message: str) -> None:
    try:
        P.send_message(conn, {"ok": False, "kind": kind, "error": message})
    except (OSError, ssl.SSLError):
        pass


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the process that started us dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
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
        print(json.dumps({"error": "no token on stdin"}), flush=True)
        return 4
    tls = P.server_tls_context(args.tls_cert, args.tls_key, args.tls_ca) \
        if args.tls_cert else None
    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.listen, args.port))
    server.listen(4)
    receiver = Receiver(os.path.abspath(args.dest_dir), args.transfer_id, token, tls,
                        args.idle_timeout, fsync=not args.no_fsync)
    if args.resume:
        receiver.reload()
    print(json.dumps({"port": server.getsockname()[1], "pid": os.getpid()}), flush=True)
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
    sys.exit(main())
