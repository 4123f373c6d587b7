"""The disk-transport plugin interface used by drivers for cold migration.

A transport moves the files of one instance from a source host into a directory on
a destination host.  Transports are plugins in the entry-point group
``virtsdk.disk_transports``; a driver loads one with :func:`load_transport`.

Who calls what (all calls are made by the *driver* on the host named)::

    destination  prepare_receive(dest_dir, endpoint) -> ticket   prepare_migrate_disk_target
    source       send(files, ticket, progress)      -> result   migrate_disk_and_power_off
    destination  finish_receive(ticket)              -> files    finish_migration
    destination  cancel_receive(ticket)                          after any failure

The ticket is JSON-safe: the manager carries it from the destination to the source
inside :class:`virtsdk.objects.ColdMigrateData`.  It may hold a secret (a one-time
token), so it must not be logged.  Every transport guarantees:

* the source files are only ever read;
* every received name is confined to ``dest_dir`` (:func:`virtsdk.validation.confine_path`),
  names starting with ``.virtsdk-`` are refused (that prefix is the transports' own state);
* ``finish_receive`` returns only after every file arrived complete and verified, and
  raises :class:`~virtsdk.exceptions.DiskTransferError` otherwise;
* ``cancel_receive`` stops whatever the destination started and removes the files the
  transfer created (never files that were there before).
"""

from __future__ import annotations

import abc
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from oslo_config import cfg

from virtsdk.exceptions import DiskTransferError, Invalid
from virtsdk.objects import TransferProgress, VirtObject
from virtsdk.plugins import DISK_TRANSPORTS, Plugin, load, register_opts
from virtsdk.transfer.names import STATE_PREFIX, check_name
from virtsdk.transfer.names import confine_name as confine_name  # re-exported
from virtsdk.validation import validate_hostname

#: ``[disk_transfer] transport`` value that lets :func:`choose_transport` decide.
AUTO = "auto"

ProgressCallback = Callable[[TransferProgress], None]

common_opts = [
    cfg.StrOpt("transport", default=AUTO,
               help="Disk transport for cold migration: an entry-point name of the "
                    "virtsdk.disk_transports group (local, stream, rsync, scp) or 'auto' "
                    "(local when both hosts see the same instance directory, else stream)."),
    cfg.IntOpt("parallel_files", default=1, min=1,
               help="How many disks of one instance are sent at the same time.  Measured "
                    "on 2 cores over one link, two at once was 1.17x slower than one after "
                    "the other (the transfer is CPU and link bound), hence 1; raise it "
                    "where disks sit on separate storage and cores are free."),
]


@dataclass
class HostEndpoint:
    """How to reach a host and how to run a command on it.

    ``address`` is what the peer connects to; ``exec_prefix`` is prepended to run a
    command *on* that host (e.g. ``["ip", "netns", "exec", "ns-b"]`` in the lab, empty
    on a real host).
    """

    address: str
    exec_prefix: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        validate_hostname(self.address)
        if not all(isinstance(a, str) and a for a in self.exec_prefix):
            raise Invalid(f"exec_prefix must be a list of non-empty strings: {self.exec_prefix!r}")


@dataclass
class SendFile:
    """One file to send: ``path`` on the source, ``name`` relative to ``dest_dir``."""

    path: str
    name: str

    def __post_init__(self) -> None:
        if not os.path.isabs(self.path):
            raise Invalid(f"source path must be absolute: {self.path!r}")
        check_name(self.name)


@dataclass
class SentFile(VirtObject):
    """What the source sent for one file.

    ``bytes_sent`` counts file data transferred (holes and zero blocks excluded),
    ``bytes_on_wire`` what crossed the link for it (after compression, with framing;
    0 for a local copy).  ``digest`` is :func:`virtsdk.transfer.extents.file_digest`
    of the content (empty when the transport computes none).
    """

    name: str
    size: int
    bytes_sent: int = 0
    bytes_on_wire: int = 0
    digest: str = ""
    seconds: float = 0.0
    backing_file: str | None = None


@dataclass
class TransferResult(VirtObject):
    """What :meth:`DiskTransport.send` returns on the source."""

    transport: str
    files: list[SentFile] = field(default_factory=list)
    seconds: float = 0.0
    resumed_bytes: int = 0

    @property
    def bytes_sent(self) -> int:
        return sum(f.bytes_sent for f in self.files)

    @property
    def bytes_on_wire(self) -> int:
        return sum(f.bytes_on_wire for f in self.files)


@dataclass
class ReceivedFile(VirtObject):
    """One file as it arrived on the destination (``path`` is absolute there)."""

    name: str
    path: str
    size: int
    allocated: int = 0
    digest: str = ""


def source_sizes(files: list[SendFile]) -> list[int]:
    """Source: the size of each file to send; a missing or unreadable one raises
    DiskTransferError naming it (before anything was sent)."""
    sizes = []
    for f in files:
        try:
            with open(f.path, "rb") as fh:
                sizes.append(os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            raise DiskTransferError(f"cannot read {f.path}: {exc.strerror}") from exc
    return sizes


def new_token() -> str:
    """A random one-time secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def new_transfer_id() -> str:
    """A public identifier for one transfer (names its state directory)."""
    return secrets.token_hex(8)


class ProgressMeter:
    """Turns byte counts into monotonic :class:`TransferProgress` callbacks.

    Used by senders; thread-safe enough for one writer.  ``bytes_done`` never goes
    down and never exceeds ``bytes_total``; callbacks are rate limited to ``interval``
    seconds except the final one.
    """

    def __init__(self, callback: ProgressCallback | None, total: int,
                 interval: float = 0.2) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, nbytes: int, path: str = "", final: bool = False) -> None:
        with self._lock:  # several files may report at once; keep it monotonic
            self.done = min(self.total, self.done + max(0, nbytes))
            if self.callback is None:
                return
            now = time.monotonic()
            if final or now - self._last >= self.interval:
                self._last = now
                elapsed = max(now - self.started, 1e-9)
                self.callback(TransferProgress(self.done, self.total, self.done / elapsed,
                                               path))

    def finish(self) -> None:
        self.done = self.total
        self.add(0, final=True)


class DiskTransport(Plugin, abc.ABC):
    """Base class of disk-transport plugins.

    One object may serve many transfers; per-transfer state lives in the ticket and
    in a state directory under ``dest_dir`` so that ``finish_receive`` and
    ``cancel_receive`` work from any object (or after a service restart).
    """

    #: oslo.config group of the plugin's own options (``transport_<name>`` by default).
    config_group: ClassVar[str] = ""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        register_transport_opts(conf, type(self))

    @classmethod
    def option_group(cls) -> str:
        return cls.config_group or f"transport_{cls.name}"

    @property
    def opts(self) -> Any:
        return self.conf[self.option_group()]

    @property
    def common(self) -> Any:
        return self.conf.disk_transfer

    def base_ticket(self, dest_dir: str, endpoint: HostEndpoint) -> dict[str, Any]:
        """The fields every ticket carries."""
        return {
            "transport": self.name,
            "dest_dir": os.path.abspath(dest_dir),
            "address": endpoint.address,
            "transfer_id": new_transfer_id(),
        }

    @abc.abstractmethod
    def prepare_receive(self, dest_dir: str, endpoint: HostEndpoint) -> dict[str, Any]:
        """Destination, during ``prep_resize``: get ready to receive into ``dest_dir``.

        Creates ``dest_dir`` if missing; never touches files already in it.  Returns
        a JSON-safe ticket for the source.  ``endpoint`` is this host as the source
        reaches it.
        """

    @abc.abstractmethod
    def send(self, files: list[SendFile], ticket: dict[str, Any],
             progress: ProgressCallback | None = None) -> TransferResult:
        """Source, in ``migrate_disk_and_power_off``: send ``files`` (read only).

        Returns once the destination acknowledged every file; raises
        :class:`DiskTransferError` (or a subclass) otherwise.
        """

    @abc.abstractmethod
    def finish_receive(self, ticket: dict[str, Any], timeout: float = 600) -> list[ReceivedFile]:
        """Destination, in ``finish_migration``: wait for the transfer, verify it,
        stop anything started for it.  Raises DiskTransferError on a missing or
        corrupt file (the received files are then left for :meth:`cancel_receive`)."""

    @abc.abstractmethod
    def cancel_receive(self, ticket: dict[str, Any]) -> None:
        """Destination, after a failure: stop receiving and delete what this transfer
        created.  Idempotent; never raises for an already-cancelled ticket."""


def register_transport_opts(conf: cfg.ConfigOpts, cls: type[DiskTransport]) -> None:
    """Register ``[disk_transfer]`` and the plugin's own group (idempotent)."""
    conf.register_opts(common_opts, group="disk_transfer")
    register_opts(conf, cls)


def load_transport(name: str, conf: cfg.ConfigOpts) -> DiskTransport:
    """Build the transport registered as ``name`` (see :func:`virtsdk.plugins.load`
    for the errors)."""
    return load(DISK_TRANSPORTS, name, DiskTransport)(conf)


def configured_transport(conf: cfg.ConfigOpts) -> str:
    """``[disk_transfer] transport`` (registering the options if needed)."""
    register_transport_opts(conf, DiskTransport)
    name: str = conf.disk_transfer.transport
    return name


#: Names of the marker files a receiving destination leaves (see :func:`probe_name`):
#: a directory holding one is (or was) the target of an unfinished receive.
PROBE_PREFIX = f"{STATE_PREFIX}probe-"


def probe_name(ticket: dict[str, Any]) -> str:
    """Name of the marker file a destination leaves for the shared-storage test."""
    return f"{PROBE_PREFIX}{ticket['transfer_id']}"


def write_probe(ticket: dict[str, Any]) -> None:
    """Destination: leave the marker :func:`is_shared_dest` looks for."""
    path = os.path.join(ticket["dest_dir"], probe_name(ticket))
    with open(path, "w", encoding="ascii") as fh:
        fh.write(ticket["transfer_id"])


def remove_probe(ticket: dict[str, Any]) -> None:
    try:
        os.unlink(os.path.join(ticket["dest_dir"], probe_name(ticket)))
    except (FileNotFoundError, KeyError):
        pass


def is_shared_dest(ticket: dict[str, Any]) -> bool:
    """Source: does this host see the destination's ``dest_dir`` (shared storage or
    the same machine)?  True when the destination's probe marker is visible here."""
    try:
        path = os.path.join(ticket["dest_dir"], probe_name(ticket))
        with open(path, encoding="ascii") as fh:
            return fh.read() == str(ticket["transfer_id"])
    except (OSError, KeyError):
        return False


def choose_transport(conf: cfg.ConfigOpts, ticket: dict[str, Any] | None = None) -> str:
    """The transport to use.  Called on the destination without a ticket (which
    receiver to prepare) and on the source with the destination's ticket.

    An explicit ``[disk_transfer] transport`` always wins.  With ``auto`` the
    destination prepares ``stream`` (its ticket carries a probe marker); the source
    then picks ``local`` when it sees the probe (shared instance path), else the
    ticket's own transport.  :class:`~virtsdk.transfer.stream.StreamTransport`
    accepts a ``local`` send into its ticket and finishes accordingly.
    """
    name = configured_transport(conf)
    if name != AUTO:
        return name
    if ticket is None:
        return "stream"
    if is_shared_dest(ticket):
        return "local"
    return str(ticket.get("transport", "stream"))
