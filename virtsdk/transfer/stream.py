"""``stream`` transport: a TCP (optionally TLS) stream that needs no ssh keys.

The destination starts a receiver process (:mod:`virtsdk.transfer.receiver`) on its
address with a one-time token; the source connects and sends only the non-zero runs
of each file's data extents (:mod:`virtsdk.transfer.sender`), checksummed, compressed
when that is faster, resuming after a dropped connection.  Holes stay holes.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from oslo_config import cfg

from virtsdk.exceptions import DiskTransferError, TransferIntegrityError
from virtsdk.transfer import protocol as P
from virtsdk.transfer import state as xstate
from virtsdk.transfer.base import (
    DiskTransport,
    HostEndpoint,
    ProgressCallback,
    ProgressMeter,
    ReceivedFile,
    SendFile,
    SentFile,
    TransferResult,
    new_token,
    remove_probe,
    source_sizes,
    write_probe,
)
from virtsdk.transfer.local import finish_local_receive
from virtsdk.transfer.sender import SenderOptions, StreamSender

#: Receivers started by this process, by transfer id (killed at exit at the latest).
_RECEIVERS: dict[str, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()
START_TIMEOUT = 20.0


def _kill_all_receivers() -> None:
    with _LOCK:
        procs = list(_RECEIVERS.values())
        _RECEIVERS.clear()
    for proc in procs:
        _stop(proc)


atexit.register(_kill_all_receivers)


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The receiver's first stdout line, or b"" if it died or said nothing in time."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return b""
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return b""
        chunk = os.read(fd, 4096)
        if not chunk:
            return line
        line += chunk
    return line


def _wait_for_news(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """Sleep until the receiver says something on stdout (it prints a line when the
    transfer is complete), exits, or ``timeout`` passes.  A receiver that is not
    ours (started before a service restart) is polled instead."""
    stdout = proc.stdout if proc is not None else None
    if stdout is None or stdout.closed:
        time.sleep(min(0.05, max(0.0, timeout)))
        return
    ready, _, _ = select.select([stdout.fileno()], [], [], max(0.0, timeout))
    if ready and not os.read(stdout.fileno(), 4096):
        stdout.close()  # it exited: poll the record from now on


class StreamTransport(DiskTransport):
    """Network stream: sparse-aware, checksummed, compressed when it pays, resumable."""

    name = "stream"

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        return [
            cfg.PortOpt("listen_port", default=0,
                        help="Port the receiver listens on (0: any free port)."),
            cfg.FloatOpt("receiver_idle_timeout", default=600.0, min=1.0,
                         help="A receiver exits after this many seconds without an "
                              "authenticated sender."),
            cfg.FloatOpt("handshake_timeout", default=10.0, min=0.1,
                         help="Seconds a connection to the receiver has, in all, to finish "
                              "its TLS handshake and present the token; it is closed then."),
            cfg.IntOpt("max_handshakes", default=16, min=1,
                       help="Connections the receiver lets authenticate at the same time; "
                            "one more drops the oldest."),
            cfg.StrOpt("checksum", default="xxh3",
                       choices=["xxh3", "crc32", "sha256", "blake2b"],
                       help="Per-run checksum: xxh3 (128-bit xxHash, about 13 GB/s here) "
                            "catches corruption at almost no CPU cost; sha256 and blake2b "
                            "are cryptographic but cost about 1 s per GiB on each side."),
            cfg.StrOpt("compression", default="auto", choices=["auto", "on", "off"],
                       help="zstd compression of each run; auto compresses when the measured "
                            "compression rate and ratio beat the measured link rate."),
            cfg.IntOpt("compression_level", default=1, min=-5, max=19,
                       help="zstd level."),
            cfg.BoolOpt("fsync", default=True,
                        help="The receiver fsyncs every file before it reports the transfer "
                             "complete (so the source may delete its copy after a crash of "
                             "the destination)."),
            cfg.BoolOpt("tls", default=False, help="Encrypt the stream with TLS."),
            cfg.StrOpt("tls_cert", help="Receiver certificate (PEM)."),
            cfg.StrOpt("tls_key", help="Receiver private key (PEM)."),
            cfg.StrOpt("tls_ca", help="CA the sender verifies the receiver against "
                                      "(default: the system CAs)."),
            cfg.FloatOpt("connect_timeout", default=10.0, min=0.1,
                         help="Seconds to connect to the receiver."),
            cfg.FloatOpt("io_timeout", default=60.0, min=0.1,
                         help="Seconds a send or receive may stall before the connection "
                              "counts as dropped."),
            cfg.IntOpt("retries", default=3, min=0,
                       help="Reconnect-and-resume attempts after a dropped connection."),
            cfg.StrOpt("python", default=sys.executable,
                       sample_default="<the Python interpreter running the service>",
                       help="Python that runs the receiver on the destination."),
        ]

    # -- destination -------------------------------------------------------------------

    def prepare_receive(self, dest_dir: str, endpoint: HostEndpoint) -> dict[str, Any]:
        """Destination: start a receiver listening on ``endpoint.address`` (run with
        ``endpoint.exec_prefix``) and return the ticket (address, port, one-time token,
        dest_dir, tls).  Raises DiskTransferError if the receiver does not come up;
        nothing is left running then."""
        if self.opts.tls and not (self.opts.tls_cert and self.opts.tls_key):
            raise DiskTransferError("[transport_stream] tls needs tls_cert and tls_key")
        os.makedirs(dest_dir, exist_ok=True)
        ticket = self.base_ticket(dest_dir, endpoint)
        ticket["token"] = new_token()
        ticket["tls"] = bool(self.opts.tls)
        os.makedirs(xstate.work_dir(ticket["dest_dir"], ticket["transfer_id"]), mode=0o700)
        try:
            self._start_receiver(ticket, endpoint, resume=False)
        except DiskTransferError:
            xstate.forget(ticket["dest_dir"], ticket["transfer_id"])
            raise
        write_probe(ticket)
        return ticket

    def resume_receive(self, ticket: dict[str, Any], endpoint: HostEndpoint) -> dict[str, Any]:
        """Destination: start a new receiver for a transfer whose receiver died (e.g.
        with the service that started it).  It replays the journal, keeping the runs
        whose data on disk still matches; returns the ticket with the new port (same
        token), which the source uses to resume with :meth:`send`."""
        self._stop_receiver(ticket)
        ticket = dict(ticket)
        self._start_receiver(ticket, endpoint, resume=True)
        return ticket

    def _start_receiver(self, ticket: dict[str, Any], endpoint: HostEndpoint,
                        resume: bool) -> None:
        work = xstate.work_dir(ticket["dest_dir"], ticket["transfer_id"])
        cmd = [*endpoint.exec_prefix, self.opts.python, "-m", "virtsdk.transfer.receiver",
               "--dest-dir", ticket["dest_dir"], "--transfer-id", ticket["transfer_id"],
               "--listen", endpoint.address, "--port", str(self.opts.listen_port),
               "--idle-timeout", str(self.opts.receiver_idle_timeout),
               "--handshake-timeout", str(self.opts.handshake_timeout),
               "--max-handshakes", str(self.opts.max_handshakes),
               "--parent-pid", str(os.getpid())]
        if resume:
            cmd.append("--resume")
        if not self.opts.fsync:
            cmd.append("--no-fsync")
        if ticket.get("tls"):
            cmd += ["--tls-cert", self.opts.tls_cert, "--tls-key", self.opts.tls_key]
        log_path = os.path.join(work, "receiver.log")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, close_fds=True)
        assert proc.stdin is not None
        try:
            proc.stdin.write(ticket["token"].encode() + b"\n")
            proc.stdin.close()
            line = _read_line(proc, START_TIMEOUT)
            info = json.loads(line) if line.strip() else {}
            ticket["port"] = int(info["port"])
        except (OSError, ValueError, KeyError) as exc:
            _stop(proc)
            with open(log_path, "rb") as fh:
                tail = fh.read()[-800:].decode(errors="replace").strip()
            raise DiskTransferError(f"the stream receiver did not start ({exc!r}): {tail}") \
                from exc
        with open(os.path.join(work, "receiver.pid"), "w", encoding="ascii") as fh:
            fh.write(str(info.get("pid", proc.pid)))
        with _LOCK:
            _RECEIVERS[ticket["transfer_id"]] = proc

    def finish_receive(self, ticket: dict[str, Any], timeout: float = 600) -> list[ReceivedFile]:
        """Destination: wait until the receiver reports the transfer complete (every
        run checksummed, every file's digest matched, data fsynced), then return the
        files.  If the source copied locally instead (shared storage), stop the
        receiver and verify that copy.  Raises DiskTransferError on timeout or a
        receiver error (files are left for :meth:`cancel_receive`)."""
        dest_dir, tid = ticket["dest_dir"], ticket["transfer_id"]
        deadline = time.monotonic() + timeout
        while True:
            record = xstate.read_state(dest_dir, tid) or {}
            if record.get("transport") == "local":
                self._stop_receiver(ticket)
                return finish_local_receive(ticket, max(0.1, deadline - time.monotonic()))
            if record.get("complete"):
                break
            if record.get("error"):
                raise DiskTransferError(f"transfer {tid} failed: {record['error']}")
            proc = _RECEIVERS.get(tid)
            if proc is not None and proc.poll() not in (None, 0):
                raise DiskTransferError(f"the receiver of transfer {tid} exited with "
                                        f"{proc.returncode}")
            if time.monotonic() >= deadline:
                raise DiskTransferError(f"transfer {tid} did not complete within "
                                        f"{timeout:.0f}s")
            _wait_for_news(proc, min(1.0, deadline - time.monotonic()))
        proc = _RECEIVERS.get(tid)
        if proc is not None:  # it records completion last, then exits by itself
            try:
                proc.wait(max(0.1, min(10.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        self._stop_receiver(ticket)
        out = []
        for prim in record["files"]:
            sent = SentFile(**prim)
            received = xstate.received_file(dest_dir, sent.name, sent.digest)
            if received.size != sent.size:
                raise TransferIntegrityError(f"{sent.name}: size {received.size}, "
                                             f"expected {sent.size}")
            out.append(received)
        xstate.forget(dest_dir, tid)
        remove_probe(ticket)
        return out

    def cancel_receive(self, ticket: dict[str, Any]) -> None:
        """Destination: stop the receiver and delete every file this transfer created
        (partial or complete).  Idempotent."""
        self._stop_receiver(ticket)
        xstate.remove_created(ticket["dest_dir"], ticket["transfer_id"])
        remove_probe(ticket)

    def _stop_receiver(self, ticket: dict[str, Any]) -> None:
        tid = ticket["transfer_id"]
        with _LOCK:
            proc = _RECEIVERS.pop(tid, None)
        if proc is not None:
            _stop(proc)
            return
        # Started by another process (e.g. before a service restart): use the pid file.
        pidfile = os.path.join(xstate.work_dir(ticket["dest_dir"], tid), "receiver.pid")
        try:
            with open(pidfile, encoding="ascii") as fh:
                pid = int(fh.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if tid.encode() in fh.read():
                    os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass

    # -- source ------------------------------------------------------------------------

    def sender_options(self) -> SenderOptions:
        tls = None
        if self.opts.tls or self.opts.tls_ca:
            tls = P.client_tls_context(self.opts.tls_ca)
        return SenderOptions(checksum=self.opts.checksum, compression=self.opts.compression,
                             level=self.opts.compression_level, tls=tls,
                             connect_timeout=self.opts.connect_timeout,
                             io_timeout=self.opts.io_timeout, retries=self.opts.retries,
                             parallel_files=self.common.parallel_files)

    def send(self, files: list[SendFile], ticket: dict[str, Any],
             progress: ProgressCallback | None = None,
             options: SenderOptions | None = None) -> TransferResult:
        """Source: send ``files`` to the receiver of ``ticket``; returns once the
        receiver confirmed every file.  A dropped connection is retried and resumed;
        a wrong token raises TransferAuthError, corrupted data TransferIntegrityError.
        The source files are only read."""
        started = time.monotonic()
        sizes = source_sizes(files)
        meter = ProgressMeter(progress, sum(sizes))
        sender = StreamSender(files, ticket, options or self.sender_options(), meter)
        sent = sender.run()
        meter.finish()
        return TransferResult(transport=self.name, files=sent,
                              seconds=time.monotonic() - started,
                              resumed_bytes=sender.resumed_bytes)
