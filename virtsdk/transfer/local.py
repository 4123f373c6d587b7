"""``local`` transport: copy on one machine or onto storage both hosts share.

The source host writes straight into the destination's ``dest_dir`` (which it can
see).  Each file is copied extent by extent: a reflink (``FICLONE``) when the
filesystem can, else ``os.copy_file_range`` for each data extent (same filesystem),
else ``os.sendfile`` for each data extent (across filesystems); or, by choice,
plain reads and writes of the non-zero runs.  Holes stay holes; the copy is never more
allocated than the original.  An existing destination file is never overwritten
(so copying a file onto itself, e.g. on shared storage, is refused, not truncated).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from oslo_config import cfg

from virtsdk.exceptions import DiskTransferError, TransferIntegrityError
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
    confine_name,
    remove_probe,
    source_sizes,
)
from virtsdk.transfer.extents import (
    DigestBuilder,
    checksum_function,
    data_extents,
    file_digest,
    iter_runs,
)
from virtsdk.transfer.images import backing_file_of

FICLONE = 0x40049409
METHODS = ("auto", "reflink", "copy_range", "sendfile", "userspace")


def _reflink(src_fd: int, dst_fd: int) -> bool:
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return True
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL,
                         errno.ENOSYS, errno.EPERM):
            return False
        raise


def _copy_range(src_fd: int, dst_fd: int, size: int, meter: ProgressMeter, name: str) -> int:
    """Copy every data extent with copy_file_range; returns bytes copied."""
    copied = 0
    for offset, length in data_extents(src_fd, size):
        pos, end = offset, offset + length
        while pos < end:
            try:
                n = os.copy_file_range(src_fd, dst_fd, end - pos, pos, pos)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL) \
                        and copied == 0:
                    raise _FallBack from exc
                raise
            if n == 0:
                raise OSError(errno.EIO, f"source shrank while copying at {pos}")
            pos += n
            copied += n
            meter.add(n, name)
    return copied


def _copy_sendfile(src_fd: int, dst_fd: int, size: int, meter: ProgressMeter, name: str) -> int:
    """Copy every data extent with sendfile (in-kernel, works across filesystems)."""
    copied = 0
    for offset, length in data_extents(src_fd, size):
        os.lseek(dst_fd, offset, os.SEEK_SET)
        pos, end = offset, offset + length
        while pos < end:
            n = os.sendfile(dst_fd, src_fd, pos, end - pos)
            if n == 0:
                raise OSError(errno.EIO, f"source shrank while copying at {pos}")
            pos += n
            copied += n
            meter.add(n, name)
    return copied


class _FallBack(Exception):
    """copy_file_range is not available between these files."""


def _copy_userspace(src_fd: int, dst_fd: int, size: int, meter: ProgressMeter, name: str,
                    digest: DigestBuilder | None) -> int:
    """Read the non-zero runs, write them at their offsets; returns bytes written."""
    fn = checksum_function(digest.checksum) if digest else None
    written = 0
    for run in iter_runs(src_fd, size):
        os.pwrite(dst_fd, run.data, run.offset)
        if digest is not None and fn is not None:
            digest.add(run.offset, len(run.data), fn(run.data))
        written += len(run.data)
        meter.add(len(run.data), name)
    return written


class LocalTransport(DiskTransport):
    """Copy within one machine or over a shared filesystem (reflink when possible)."""

    name = "local"

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        return [
            cfg.StrOpt("method", default="auto", choices=METHODS,
                       help="auto: reflink, else copy_file_range per data extent (same "
                            "filesystem), else sendfile per data extent (across "
                            "filesystems); userspace: read/write only the non-zero runs "
                            "(also drops allocated zero blocks)."),
            cfg.StrOpt("checksum", default="none",
                       choices=["none", "xxh3", "crc32", "sha256", "blake2b"],
                       help="Digest computed while copying and verified by finish_receive "
                            "(none: only sizes are checked)."),
        ]

    # -- destination -------------------------------------------------------------------

    def prepare_receive(self, dest_dir: str, endpoint: HostEndpoint) -> dict[str, Any]:
        """Destination: create ``dest_dir`` and return the ticket (no process runs)."""
        os.makedirs(dest_dir, exist_ok=True)
        return self.base_ticket(dest_dir, endpoint)

    def finish_receive(self, ticket: dict[str, Any], timeout: float = 600) -> list[ReceivedFile]:
        """Destination: wait for the sender's completion record, check every file's
        size (and digest when one was computed), then drop the record."""
        return finish_local_receive(ticket, timeout)

    def cancel_receive(self, ticket: dict[str, Any]) -> None:
        """Destination: delete the files this transfer created and its record."""
        xstate.remove_created(ticket["dest_dir"], ticket["transfer_id"])
        remove_probe(ticket)

    # -- source ------------------------------------------------------------------------

    def send(self, files: list[SendFile], ticket: dict[str, Any],
             progress: ProgressCallback | None = None) -> TransferResult:
        """Source (which sees ``dest_dir``): copy every file, ``parallel_files`` at a
        time.  On failure the files created so far are removed and the record says
        so; the sources are only read."""
        dest_dir, tid = ticket["dest_dir"], ticket["transfer_id"]
        targets = [(f, confine_name(dest_dir, f.name)) for f in files]
        sizes = source_sizes(files)
        record: dict[str, Any] = {"transport": self.name, "created": [], "created_dirs": [],
                                  "files": [], "complete": False}
        for _f, dst in targets:
            record["created_dirs"] += xstate.make_parents(dest_dir, dst)
        xstate.write_state(dest_dir, tid, record)
        lock = threading.Lock()

        def claimed(name: str) -> None:
            # recorded only once it is ours, so a cancel never deletes a file it found
            with lock:
                record["created"].append(name)
                xstate.write_state(dest_dir, tid, record)

        meter = ProgressMeter(progress, sum(sizes))
        started = time.monotonic()
        created: list[str] = []
        try:
            with ThreadPoolExecutor(max_workers=self.common.parallel_files) as pool:
                futures = [pool.submit(self._copy_file, f, dst, meter, created, claimed)
                           for f, dst in targets]
                sent = [fut.result() for fut in futures]
        except Exception as exc:
            for path in created:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            record["created"] = []
            xstate.write_state(dest_dir, tid, record)
            xstate.remove_created(dest_dir, tid)  # the directories it made
            if isinstance(exc, DiskTransferError):
                raise
            raise DiskTransferError(f"local copy into {dest_dir} failed: {exc}") from exc
        meter.finish()
        record["files"] = [s.to_primitive() for s in sent]
        record["complete"] = True
        xstate.write_state(dest_dir, tid, record)
        return TransferResult(transport=self.name, files=sent,
                              seconds=time.monotonic() - started)

    def _copy_file(self, f: SendFile, dst: str, meter: ProgressMeter,
                   created: list[str], claimed: Callable[[str], None]) -> SentFile:
        started = time.monotonic()
        checksum = self.opts.checksum
        method = self.opts.method
        with open(f.path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            try:
                dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise DiskTransferError(f"destination file {dst} already exists; "
                                        "refusing to overwrite it") from None
            created.append(dst)
            claimed(f.name)
            try:
                copied, digest = self._copy_fd(src.fileno(), dst_fd, size, method, checksum,
                                               meter, f.name)
                os.ftruncate(dst_fd, size)
            finally:
                os.close(dst_fd)
        if checksum != "none" and digest is None:
            digest_hex = file_digest(f.path, checksum)
        else:
            digest_hex = digest.hexdigest() if digest else ""
        return SentFile(name=f.name, size=size, bytes_sent=copied, digest=digest_hex,
                        seconds=time.monotonic() - started,
                        backing_file=backing_file_of(f.path))

    @staticmethod
    def _copy_fd(src_fd: int, dst_fd: int, size: int, method: str, checksum: str,
                 meter: ProgressMeter, name: str) -> tuple[int, DigestBuilder | None]:
        if method in ("auto", "reflink") and _reflink(src_fd, dst_fd):
            meter.add(size, name)
            return size, None
        if method == "reflink":
            raise DiskTransferError("reflink requested but the filesystem cannot clone")
        if method in ("auto", "copy_range"):
            try:
                return _copy_range(src_fd, dst_fd, size, meter, name), None
            except _FallBack:
                if method == "copy_range":
                    raise DiskTransferError("copy_file_range is not possible here") from None
        if method in ("auto", "sendfile"):
            return _copy_sendfile(src_fd, dst_fd, size, meter, name), None
        digest = DigestBuilder(size, checksum) if checksum != "none" else None
        return _copy_userspace(src_fd, dst_fd, size, meter, name, digest), digest


def finish_local_receive(ticket: dict[str, Any], timeout: float) -> list[ReceivedFile]:
    """Destination side of a ``local`` send (also used by ``stream`` when the source
    found the destination directory shared and copied locally)."""
    dest_dir, tid = ticket["dest_dir"], ticket["transfer_id"]
    deadline = time.monotonic() + timeout
    while True:
        record = xstate.read_state(dest_dir, tid)
        if record and record.get("complete"):
            break
        if time.monotonic() >= deadline:
            raise DiskTransferError(f"transfer {tid} into {dest_dir} did not complete "
                                    f"within {timeout:.0f}s")
        time.sleep(0.05)
    out = []
    for prim in record["files"]:
        sent = SentFile.from_primitive(prim)
        received = xstate.received_file(dest_dir, sent.name, sent.digest)
        if received.size != sent.size:
            raise TransferIntegrityError(
                f"{sent.name}: {received.size} bytes received, {sent.size} sent")
        if sent.digest:
            checksum = sent.digest.split(":", 1)[0]
            actual = file_digest(received.path, checksum)
            if actual != sent.digest:
                raise TransferIntegrityError(f"{sent.name}: digest mismatch after copy")
        out.append(received)
    xstate.forget(dest_dir, tid)
    remove_probe(ticket)
    return out
