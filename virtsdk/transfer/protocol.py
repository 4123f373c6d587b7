"""Wire format of the ``stream`` transport (sender on the source, receiver on the
destination).

A session is::

    sender   MAGIC, hello {"token", "transfer_id"}
    receiver {"ok": true} or {"ok": false, "error": "...", "kind": "auth" | "invalid"}
    sender   offer {"checksum", "files": [{"name", "size"}, ...]}
    receiver {"ok": true, "done": {name: [[offset, length, checksum_hex], ...]}}
             or {"ok": false, "error": "...", "kind": "integrity" | "invalid"}
    sender   frames: DATA*, FILE_DONE per file, DONE
    receiver {"ok": true, "files": [...]} after DONE (or an error at any point)

A *message* is a 4-byte big-endian length and UTF-8 JSON.  Before the token is
checked the receiver reads nothing but the magic and a hello of at most
:data:`MAX_HELLO` bytes that must be a flat object of two short strings (its length
is checked before a byte of it is read, its nesting before it is parsed), all within
one deadline for the whole handshake; every later message is bounded too
(:data:`MAX_MESSAGE`) and checked against the schemas below
(:mod:`virtsdk.transfer.schema`).

A *frame* is :data:`FRAME` (type, flags, file index, offset, raw length, payload
length) followed by the checksum of the raw data (length fixed by the negotiated
checksum) and the payload (the raw data, zstd-compressed when ``flags &
COMPRESSED``).  ``FILE_DONE`` carries the file's size in ``offset`` and a JSON object
(:data:`FILE_DONE_INFO`) as payload; ``DONE`` is empty.  ``BATCH`` carries many
small runs of one file: ``offset`` is their count, the raw payload is a table
(:data:`BATCH_ENTRY` + checksum per run) followed by the runs' data, and the frame
checksum covers that whole raw payload (table included).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import TYPE_CHECKING, Any

from virtsdk.transfer.extents import CHECKSUMS
from virtsdk.transfer.schema import BadMessage, List, Nullable, Object, OneOf, parse
from virtsdk.validation import Integer, Number, Text

if TYPE_CHECKING:  # ssl is imported only where TLS is used: the receiver must start fast
    import ssl

#: Largest file size a receiver accepts (``off_t``).
MAX_FILE_SIZE = (1 << 63) - 1
#: Most files one transfer carries.
MAX_FILES = 256
#: Longest destination name (relative path); each component is also at most 255 bytes.
MAX_NAME = 1024

MAGIC = b"VSDKXFER2\n"
FRAME = struct.Struct(">BBxxIQII")
DATA, FILE_DONE, DONE, BATCH = 1, 2, 3, 4
#: One run inside a BATCH payload: offset, length (then its checksum).
BATCH_ENTRY = struct.Struct(">QI")
MAX_BATCH = 4096
COMPRESSED = 1
#: Largest hello (the only message read before authentication).
MAX_HELLO = 4096
#: Largest offer or FILE_DONE payload a receiver reads (after authentication).
MAX_MESSAGE = 1 << 20
#: Largest reply a sender reads (the runs a receiver already has can be many).
MAX_REPLY = 64 << 20
#: Largest raw or compressed payload a receiver accepts in one frame.
MAX_PAYLOAD = 8 << 20


class ProtocolError(Exception):
    """The peer broke the protocol (or the connection dropped mid-message)."""


class SessionError(Exception):
    """Ends one sender connection with an error reply of ``kind`` (``auth``,
    ``invalid`` or ``integrity``); raised by the receiver's parts."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


#: The hello: flat, two short strings (nesting depth 1).
HELLO = Object({"token": Text(256), "transfer_id": Text(64)})
#: The offer: the files an authenticated sender is about to send.
OFFER = Object({
    "checksum": OneOf(frozenset(CHECKSUMS)),
    "files": List(Object({"name": Text(MAX_NAME), "size": Integer(0, MAX_FILE_SIZE)}),
                  MAX_FILES, min_len=1),
})
#: The payload of a FILE_DONE frame.
FILE_DONE_INFO = Object({"digest": Text(200)},
                        {"bytes_sent": Integer(0, MAX_FILE_SIZE), "seconds": Number(0.0, 1e9),
                         "backing_file": Nullable(Text(4096))})
#: How deeply each message may nest (flat object = 1).
HELLO_DEPTH, OFFER_DEPTH, INFO_DEPTH, REPLY_DEPTH = 1, 3, 1, 4


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


def recv_message(sock: socket.socket, limit: int, max_depth: int) -> dict[str, Any]:
    """Read one message of at most ``limit`` bytes (refused before any of it is read)
    and at most ``max_depth`` levels of nesting (refused before it is parsed)."""
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    if length > limit:
        raise ProtocolError(f"message of {length} bytes is too large (limit {limit})")
    return decode(recv_exact(sock, length), max_depth)


def decode(data: bytes, max_depth: int) -> dict[str, Any]:
    """One JSON object of at most ``max_depth`` levels (ProtocolError otherwise)."""
    try:
        message = parse(data, max_depth)
    except BadMessage as exc:
        raise ProtocolError(str(exc)) from None
    if not isinstance(message, dict):
        raise ProtocolError("message is not an object")
    return message


def server_tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """TLS for the receiver; with ``ca`` the sender must present a certificate it signed."""
    import ssl

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
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx
