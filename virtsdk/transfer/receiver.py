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

Its parts: :mod:`~virtsdk.transfer.receiver_gate` (the handshake before
authentication), :mod:`~virtsdk.transfer.receiver_frames` (frame header rules and
the writing pipeline), :mod:`~virtsdk.transfer.receiver_store` (the files, journal,
writeback and completion), :mod:`~virtsdk.transfer.receiver_session` (the
sessions); this module is the process.  Its start-up is part of every transfer's
time, so it listens and prints its port before it imports the rest (the sender may
connect at once: the kernel queues the connection) and imports ``ssl`` and
``zstandard`` only when they are used.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import sys
import time

#: Seconds a new connection has, in all, to finish TLS, magic and hello.
HANDSHAKE_TIMEOUT = 10.0
#: Connections that may be in their handshake at once.
MAX_HANDSHAKES = 16


def _on_sigterm(_sig: int, _frame: object) -> None:
    raise SystemExit(143)


def _parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 3  # the parent died before we started
    token = sys.stdin.readline().strip()
    if len(token) < 16:
        print('{"error": "no token on stdin"}', flush=True)
        return 4
    tls = None
    if args.tls_cert:
        from virtsdk.transfer.protocol import server_tls_context

        tls = server_tls_context(args.tls_cert, args.tls_key, args.tls_ca)
    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.listen, args.port))
    server.listen(64)
    store = None
    if args.resume:  # the journal is replayed before the port is announced
        from virtsdk.transfer.receiver_store import Store

        store = Store(os.path.abspath(args.dest_dir), args.transfer_id,
                      fsync=not args.no_fsync)
        store.reload()
    print(f'{{"port": {server.getsockname()[1]}, "pid": {os.getpid()}}}', flush=True)
    # the rest is imported while the sender connects
    from virtsdk.transfer.receiver_session import Receiver
    from virtsdk.transfer.receiver_store import Store, libc

    try:
        libc().prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: end with whoever started us
    except (OSError, AttributeError):
        pass
    if args.parent_pid and os.getppid() != args.parent_pid:
        server.close()
        return 3  # it died before we could ask to follow it
    if store is None:
        store = Store(os.path.abspath(args.dest_dir), args.transfer_id, fsync=not args.no_fsync)
    receiver = Receiver(store, token, tls, idle_timeout=args.idle_timeout,
                        handshake_timeout=args.handshake_timeout,
                        max_handshakes=max(1, args.max_handshakes))
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
