"""The ``stream`` receiver's frames: header rules and the writing pipeline.

:func:`check_frame` refuses a frame header whose fields are out of range before its
payload is read; :class:`FramePipeline` verifies and writes frames (through a
:class:`~virtsdk.transfer.receiver_store.Store`) on a thread of its own while the
next frame is received, with a small pool of buffers so memory stays bounded.
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from virtsdk.transfer import protocol as P
from virtsdk.transfer.extents import CHECKSUMS

if TYPE_CHECKING:
    from virtsdk.transfer.receiver_store import IncomingFile, Store


def check_frame(files: Sequence[IncomingFile], checksum: str, kind: int, flags: int,
                index: int, offset: int, raw_len: int, payload_len: int) -> None:
    """Raise SessionError("invalid") for a frame header that breaks the protocol."""
    def bad(why: str) -> P.SessionError:
        return P.SessionError("invalid", f"bad frame (type {kind}, file {index}, offset "
                                         f"{offset}): {why}")

    if kind == P.DONE:
        if flags or index or offset or raw_len or payload_len:
            raise bad("DONE carries nothing")
        return
    if kind not in (P.DATA, P.FILE_DONE, P.BATCH):
        raise bad("unknown frame type")
    if index >= len(files):
        raise bad(f"there are {len(files)} files")
    f = files[index]
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
                            or offset * (P.BATCH_ENTRY.size + CHECKSUMS[checksum][1])
                            > raw_len):
        raise bad(f"a batch holds 1..{P.MAX_BATCH} runs and their table")


class FramePipeline:
    """Verifies and writes frames on a thread of its own while the next frame is
    being received.  A frame is ``(FILE_DONE, index, info)`` or ``(kind, flags,
    index, offset, raw_len, checksum, buffer, payload_len)``; its buffer returns to
    the pool once written.  Buffers are anonymous memory maps: page-aligned, so a
    payload received at a buffer's start can be written with direct I/O, and
    untouched pages cost nothing until a frame needs them.  The first error stops
    the writing, calls ``on_error`` (to wake the reading thread) and is raised by the
    next :meth:`check`."""

    def __init__(self, store: Store, on_error: Callable[[], None], buffers: int = 3) -> None:
        self.store = store
        self.on_error = on_error
        self.free: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(buffers):
            self.free.put(mmap.mmap(-1, P.MAX_PAYLOAD))
        self.frames: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            frame = self.frames.get()
            try:
                if frame is None:
                    return
                if self.error is None:
                    self.store.write_frame(frame)
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

    def buffer(self) -> mmap.mmap:
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
