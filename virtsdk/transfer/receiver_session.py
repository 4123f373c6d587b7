"""The ``stream`` receiver's sessions: accept, authenticate, serve one sender at a time.

:class:`Receiver` runs inside the receiver process (:mod:`virtsdk.transfer.receiver`):
an acceptor thread starts one handshake thread per connection
(:mod:`~virtsdk.transfer.receiver_gate`), authenticated connections queue for the
session loop, which reads frames and hands them to the writing pipeline
(:mod:`~virtsdk.transfer.receiver_frames`) over the transfer's files
(:mod:`~virtsdk.transfer.receiver_store`).
"""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from virtsdk.transfer import protocol as P
from virtsdk.transfer.extents import CHECKSUMS
from virtsdk.transfer.receiver_frames import FramePipeline, check_frame
from virtsdk.transfer.receiver_gate import Gate, authenticate, reply_error, shutdown_fd
from virtsdk.transfer.receiver_store import Store
from virtsdk.transfer.schema import BadMessage, validate

if TYPE_CHECKING:
    import ssl


class Receiver:
    """Receives one transfer into ``store`` (see the module docstring): a sender
    must authenticate with ``token`` within ``handshake_timeout`` seconds, at most
    ``max_handshakes`` at once; the receiver gives up after ``idle_timeout`` seconds
    without one."""

    def __init__(self, store: Store, token: str, tls: ssl.SSLContext | None, *,
                 idle_timeout: float, handshake_timeout: float, max_handshakes: int) -> None:
        self.store = store
        self.token = token
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        #: authenticated connections waiting for the session loop
        self._ready: queue.Queue[socket.socket] = queue.Queue()
        #: (fd, family) of the connection a session is serving
        self._active: tuple[int, int] | None = None
        self._active_lock = threading.Lock()
        self._stopping = threading.Event()
        self._gate = Gate(max_handshakes, handshake_timeout)

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
                authenticate(conn, self.token, self.store.transfer_id)
            except P.SessionError as exc:
                reply_error(conn, exc.kind, str(exc))
                return
            except (P.ProtocolError, BadMessage) as exc:
                reply_error(conn, "invalid", str(exc))
                return
            if not self._gate.release(key):
                return  # its deadline passed or a newer connection displaced it
            P.send_message(conn, {"ok": True})
            if self.tls is not None:
                conn.settimeout(self.idle_timeout)
            else:  # kernel-side timeouts: no poll() before every read
                P.blocking_with_timeout(conn, self.idle_timeout)
            self._hand_over(conn)
            handed_over = True
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            pass  # the peer went away, or its deadline shut the socket down
        except Exception:  # noqa: BLE001 - an unexpected peer must never end the receiver
            sys.stderr.write(f"handshake failed:\n{traceback.format_exc()}")
        finally:
            if not handed_over:
                self._gate.release(key)
                conn.close()

    def _hand_over(self, conn: socket.socket) -> None:
        """Queue an authenticated connection for :meth:`serve`.  It ends the session
        still open, if any (its sender gave up on it and reconnected); that happens
        under the lock :meth:`_serve_one` takes, so it never hits ``conn`` itself."""
        with self._active_lock:
            if self._active is not None:
                shutdown_fd(*self._active)
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
        store = self.store
        offer = validate(P.recv_message(conn, P.MAX_MESSAGE, P.OFFER_DEPTH), P.OFFER, "offer")
        store.open_files(offer)
        for f in store.files:
            f.done = None  # every session confirms every file again
        P.send_message(conn, {"ok": True, "done": store.done_map()})
        csize = CHECKSUMS[store.checksum][1]
        header = bytearray(P.FRAME.size + csize)
        hview = memoryview(header)
        # a frame the writer refuses wakes the reading below, so the refusal is
        # answered at once (not when the next frame comes)
        fd, family = conn.fileno(), conn.family
        writer = FramePipeline(store, lambda: shutdown_fd(fd, family, socket.SHUT_RD))
        try:
            while True:
                P.recv_into_exact(conn, hview)
                kind, flags, index, offset, raw_len, payload_len = P.FRAME.unpack_from(header)
                expected = bytes(hview[P.FRAME.size:])
                check_frame(store.files, store.checksum, kind, flags, index, offset, raw_len,
                            payload_len)
                if kind == P.DONE:
                    writer.drain()
                    sent = store.verify_and_sync()
                    try:  # the data is safe whether or not the sender hears it
                        P.send_message(conn, {"ok": True,
                                              "files": [f.done for f in store.files]})
                    except OSError:
                        pass
                    store.record_complete(sent)
                    return True
                if kind == P.FILE_DONE:
                    info = validate(P.decode(P.recv_exact(conn, payload_len), P.INFO_DEPTH),
                                    P.FILE_DONE_INFO, "end-of-file record")
                    store.files[index].done = info  # no more data for it in this session
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
                    self.store.set_error(f"no sender within {self.idle_timeout:.0f}s")
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
        except P.SessionError as exc:
            reply_error(conn, exc.kind, str(exc))
        except (P.ProtocolError, BadMessage) as exc:
            reply_error(conn, "invalid", str(exc))
        except OSError as exc:  # ssl.SSLError too
            reply_error(conn, "invalid", f"connection failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a bug must not abort the migration
            sys.stderr.write(f"session failed:\n{traceback.format_exc()}")
            reply_error(conn, "invalid", f"receiver error ({type(exc).__name__})")
        finally:
            with self._active_lock:
                self._active = None
            conn.close()
        return False

    def close(self) -> None:
        self.store.close()
