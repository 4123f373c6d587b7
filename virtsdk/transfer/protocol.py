"""Wire format of the ``stream`` transport (sender on the source, receiver on the
destination).

A session is::

    sender   MAGIC, message {"token", "transfer_id", "checksum", "files": [{name, size}]}
    receiver message {"ok": true, "done": {name: [[offset, length, checksum_hex], ...]}}
             or {"ok": false, "error": "...", "kind": "auth" | "integrity" | "invalid"}
    sender   frames: DATA*, FILE_DONE per file, DONE
    receiver message {"ok": true, "files": [...]} after DONE (or an error at any point)

A *message* is a 4-byte big-endian length and UTF-8 JSON.  A *frame* is
:data:`FRAME` (type, flags, file index, offset, raw length, payload length) followed
by the checksum of the raw data (length fixed by the negotiated checksum) and the
payload (the raw data, zstd-compressed when ``flags & COMPRESSED``).  ``FILE_DONE``
carries the file's size in ``offset`` and its digest as payload; ``DONE`` is empty.
``BATCH`` carries many small runs of one file: ``offset`` is their count, the raw
payload is a table (:data:`BATCH_ENTRY` + checksum per run) followed by the runs'
data, and the frame checksum covers that whole raw payload (table included).
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
from typing import Any

MAGIC = b"VSDKXFER1\n"
FRAME = struct.Struct(">BBxxIQII")
DATA, FILE_DONE, DONE, BATCH = 1, 2, 3, 4
#: One run inside a BATCH payload: offset, length (then its checksum).
BATCH_ENTRY = struct.Struct(">QI")
MAX_BATCH = 4096
COMPRESSED = 1
MAX_MESSAGE = 64 << 20
#: Largest raw or compressed payload a receiver accepts in one frame.
MAX_PAYLOAD = 8 << 20


class ProtocolError(Exception):
    """The peer broke the protocol (or the connection dropped mid-message)."""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    recv_into_exact(sock, memoryview(buf))
    return bytes(buf)


def blocking_with_timeout(sock: socket.socket, seconds: float) -> None:
    """Make a plain TCP socket blocking, with ``seconds`` as kernel-side send and
    receive timeouts (``SO_SNDTIMEO``/``SO_RCVTIMEO``; an expired one raises an
    OSError), so that ``os.sendfile`` can send a whole run in one call instead of
    polling between partial sends."""
    whole = int(seconds)
    timeval = struct.pack("@ll", whole, int((seconds - whole) * 1e6))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def recv_into_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    n = len(view)
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ProtocolError(f"connection closed after {got} of {n} bytes")
        got += k


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv_message(sock: socket.socket) -> dict[str, Any]:
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes is too large")
    data = json.loads(recv_exact(sock, length))
    if not isinstance(data, dict):
        raise ProtocolError("message is not an object")
    return data


def server_tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """TLS for the receiver; with ``ca`` the sender must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_tls_context(ca: str | None, cert: str | None = None, key: str | None = None,
                       check_hostname: bool = True) -> ssl.SSLContext:
    """TLS for the sender: verifies the receiver against ``ca`` (system CAs if None)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx
