"""The ``stream`` receiver before authentication: the handshake gate.

A new connection may send only the magic and a small flat hello
(:mod:`virtsdk.transfer.protocol`) within one deadline for the whole handshake; at
most ``limit`` connections are in that state at once, admitting one more drops the
oldest.  The token and transfer id are compared in constant time.  Used by
:mod:`virtsdk.transfer.receiver`, which runs each handshake on a thread of its own.
"""

from __future__ import annotations

import hmac
import socket
import threading
import time

from virtsdk.transfer import protocol as P
from virtsdk.transfer.schema import validate


def shutdown_fd(fd: int, family: int, how: int = socket.SHUT_RDWR) -> None:
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


def reply_error(conn: socket.socket, kind: str, message: str) -> None:
    """Tell the peer why its session ends (best effort: it may be gone)."""
    try:
        P.send_message(conn, {"ok": False, "kind": kind, "error": message})
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        pass


def authenticate(conn: socket.socket, token: str, transfer_id: str) -> None:
    """Read the magic and the hello; raise SessionError unless they carry ``token``
    and ``transfer_id`` (ProtocolError / BadMessage for a malformed hello)."""
    if P.recv_exact(conn, len(P.MAGIC)) != P.MAGIC:
        raise P.SessionError("invalid", "not a virtsdk transfer client (or another version)")
    hello = validate(P.recv_message(conn, P.MAX_HELLO, P.HELLO_DEPTH), P.HELLO, "hello")
    token_ok = hmac.compare_digest(hello["token"].encode(), token.encode())
    id_ok = hmac.compare_digest(hello["transfer_id"].encode(), transfer_id.encode())
    if not (token_ok and id_ok):
        raise P.SessionError("auth", "wrong token or transfer id")


class Gate:
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
                shutdown_fd(fd, family)
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
                    shutdown_fd(fd, family)
            return min((d for d, _fd, _fam in self._pending.values()), default=now + 1.0) - now

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
