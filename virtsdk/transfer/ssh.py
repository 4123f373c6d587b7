"""``rsync`` and ``scp`` transports: Nova's ways, over ssh, for parity.

They need an ssh server on the destination and a key the source may use
(``[transport_ssh]``).  The source copies every file into the transfer's private
work directory on the destination (``dest_dir/.virtsdk-transfer-<id>.d``) under a
neutral name, then a manifest (names, sizes, digests) last; ``finish_receive`` on the
destination checks the manifest against the files, confines every name to
``dest_dir`` and moves the files into place without ever replacing an existing file.
``cancel_receive`` just removes the work directory.  ``rsync --sparse`` keeps holes;
``scp`` writes every byte (the destination ends up fully allocated).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from typing import Any, ClassVar

from oslo_concurrency import processutils
from oslo_config import cfg

from virtsdk.exceptions import DiskTransferError, Invalid, TransferIntegrityError
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
    source_sizes,
)
from virtsdk.transfer.extents import allocated_bytes, file_digest
from virtsdk.transfer.images import backing_file_of

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
MANIFEST = "manifest.json"


def _safe_remote_path(path: str) -> str:
    """Paths go through a remote shell (legacy scp, rsync): allow only plain ones."""
    if not _SAFE_PATH.match(path) or "/../" in f"{path}/":
        raise Invalid(f"refusing a remote path with unusual characters: {path!r}")
    return path


class SshTransport(DiskTransport):
    """Common part of the rsync and scp transports (options in ``[transport_ssh]``)."""

    config_group: ClassVar[str] = "transport_ssh"
    checksum: ClassVar[str] = "xxh3"

    @classmethod
    def list_opts(cls) -> list[cfg.Opt]:
        return [
            cfg.StrOpt("user", help="Remote user (default: the local user name)."),
            cfg.StrOpt("key_file", help="Private key for ssh (-i)."),
            cfg.PortOpt("port", default=22, help="ssh port of the destination."),
            cfg.StrOpt("strict_host_key_checking", default="no",
                       choices=["yes", "no", "accept-new"],
                       help="ssh StrictHostKeyChecking."),
            cfg.StrOpt("known_hosts_file", default="/dev/null",
                       help="ssh UserKnownHostsFile."),
            cfg.IntOpt("connect_timeout", default=10, min=1, help="ssh ConnectTimeout."),
            cfg.ListOpt("extra_options", default=[],
                        help="More ssh -o options, e.g. Ciphers=aes128-gcm@openssh.com."),
        ]

    # -- helpers -------------------------------------------------------------------------

    def ssh_options(self) -> list[str]:
        """``-o`` options shared by ssh, scp and rsync's ``-e``."""
        o = self.opts
        out = ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={o.strict_host_key_checking}",
               "-o", f"UserKnownHostsFile={o.known_hosts_file}",
               "-o", f"ConnectTimeout={o.connect_timeout}", "-o", "LogLevel=ERROR"]
        for extra in o.extra_options:
            out += ["-o", extra]
        if o.key_file:
            out += ["-i", _safe_remote_path(o.key_file)]
        return out

    def remote(self, ticket: dict[str, Any], path: str) -> str:
        user = self.opts.user
        host = ticket["address"]
        host = f"[{host}]" if ":" in host else host
        return f"{user + '@' if user else ''}{host}:{_safe_remote_path(path)}"

    def copy_command(self, src: str, remote: str) -> list[str]:
        raise NotImplementedError

    # -- destination ---------------------------------------------------------------------

    def prepare_receive(self, dest_dir: str, endpoint: HostEndpoint) -> dict[str, Any]:
        """Destination: create ``dest_dir`` and the transfer's empty work directory
        (where the source's files land); no process is started."""
        ticket = self.base_ticket(dest_dir, endpoint)
        _safe_remote_path(ticket["dest_dir"])
        os.makedirs(ticket["dest_dir"], exist_ok=True)
        os.makedirs(xstate.work_dir(ticket["dest_dir"], ticket["transfer_id"]), mode=0o700)
        return ticket

    def finish_receive(self, ticket: dict[str, Any], timeout: float = 600) -> list[ReceivedFile]:
        """Destination: wait for the manifest, verify every file against it (size and
        digest), then move them into ``dest_dir`` (never over an existing file)."""
        dest_dir, tid = ticket["dest_dir"], ticket["transfer_id"]
        work = xstate.work_dir(dest_dir, tid)
        manifest_path = os.path.join(work, MANIFEST)
        deadline = time.monotonic() + timeout
        while not os.path.exists(manifest_path):
            if time.monotonic() >= deadline:
                raise DiskTransferError(f"transfer {tid}: no manifest within {timeout:.0f}s")
            time.sleep(0.05)
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
        staged = []
        for i, prim in enumerate(manifest["files"]):
            sent = SentFile.from_primitive(prim)
            target = confine_name(dest_dir, sent.name)
            part = os.path.join(work, f"{i}.part")
            if os.path.getsize(part) != sent.size:
                raise TransferIntegrityError(f"{sent.name}: wrong size after {self.name}")
            if file_digest(part, self.checksum) != sent.digest:
                raise TransferIntegrityError(f"{sent.name}: digest mismatch after {self.name}")
            staged.append((sent, part, target))
        out = []
        record: dict[str, Any] = {"transport": self.name, "created": [], "created_dirs": []}
        for sent, part, target in staged:
            record["created_dirs"] += xstate.make_parents(dest_dir, target)
            xstate.write_state(dest_dir, tid, record)
            try:
                os.link(part, target)  # fails instead of replacing an existing file
            except FileExistsError:
                raise DiskTransferError(f"{target} already exists; refusing to overwrite") \
                    from None
            record["created"].append(sent.name)
            xstate.write_state(dest_dir, tid, record)
            out.append(ReceivedFile(name=sent.name, path=target, size=sent.size,
                                    allocated=allocated_bytes(target), digest=sent.digest))
        xstate.forget(dest_dir, tid)
        return out

    def cancel_receive(self, ticket: dict[str, Any]) -> None:
        """Destination: remove the work directory (and files already moved into place
        by a finish that failed half way)."""
        xstate.remove_created(ticket["dest_dir"], ticket["transfer_id"])

    # -- source --------------------------------------------------------------------------

    def send(self, files: list[SendFile], ticket: dict[str, Any],
             progress: ProgressCallback | None = None) -> TransferResult:
        """Source: copy each file with the tool, then the manifest.  The sources are
        only read; a failed tool run raises DiskTransferError with its stderr."""
        started = time.monotonic()
        work = xstate.work_dir(ticket["dest_dir"], ticket["transfer_id"])
        sizes = source_sizes(files)
        meter = ProgressMeter(progress, sum(sizes))
        sent = []
        for i, (f, size) in enumerate(zip(files, sizes, strict=True)):
            t0 = time.monotonic()
            self._run(self.copy_command(f.path, self.remote(ticket, f"{work}/{i}.part")))
            moved = self.wire_bytes(f.path, size)
            sent.append(SentFile(name=f.name, size=size, bytes_sent=moved, bytes_on_wire=moved,
                                 digest=file_digest(f.path, self.checksum),
                                 seconds=time.monotonic() - t0,
                                 backing_file=backing_file_of(f.path)))
            meter.add(size, f.name)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump({"files": [s.to_primitive() for s in sent]}, fh)
        try:
            self._run(self.copy_command(fh.name, self.remote(ticket, f"{work}/{MANIFEST}")))
        finally:
            os.unlink(fh.name)
        meter.finish()
        return TransferResult(transport=self.name, files=sent,
                              seconds=time.monotonic() - started)

    def wire_bytes(self, path: str, size: int) -> int:
        """Both tools read and send every byte, holes included (no -z)."""
        return size

    def _run(self, cmd: list[str]) -> None:
        try:
            processutils.execute(*cmd)
        except processutils.ProcessExecutionError as exc:
            raise DiskTransferError(f"{self.name} failed (exit {exc.exit_code}): "
                                    f"{(exc.stderr or '').strip()[:500]}") from exc


class RsyncTransport(SshTransport):
    """``rsync --sparse`` over ssh (keeps holes; needs ssh keys)."""

    name = "rsync"

    def copy_command(self, src: str, remote: str) -> list[str]:
        ssh = " ".join(["ssh", "-p", str(self.opts.port), *self.ssh_options()])
        return ["rsync", "--sparse", "--whole-file", "-e", ssh, src, remote]


class ScpTransport(SshTransport):
    """``scp`` over ssh, Nova's default (every byte travels; holes are lost)."""

    name = "scp"

    def copy_command(self, src: str, remote: str) -> list[str]:
        return ["scp", "-q", "-B", "-P", str(self.opts.port), *self.ssh_options(), src, remote]
