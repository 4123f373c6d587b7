"""RPC endpoints and errors shared by the RPC tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from virtsdk import exceptions


class Journal:
    """What several endpoints received, in one list: (endpoint name, method, kwargs)."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def add(self, name: str, method: str, kwargs: dict[str, Any]) -> None:
        with self._cond:
            self.entries.append((name, method, kwargs))
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[str, str, dict]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.entries) >= count, timeout)
            return list(self.entries)


class Recorder:
    """An RPC endpoint that records what reached it and answers simple requests."""

    def __init__(self, name: str, journal: Journal | None = None) -> None:
        self.name = name
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._journal = journal

    def _record(self, method: str, ctxt: Any, **kwargs: Any) -> None:
        with self._cond:
            self.calls.append((method, ctxt, kwargs))
            self._cond.notify_all()
        if self._journal is not None:
            self._journal.add(self.name, method, kwargs)

    def wait_calls(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any, dict]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)

    # -- endpoint methods -----------------------------------------------------------

    def echo(self, ctxt: Any, value: Any) -> Any:
        self._record("echo", ctxt, value=value)
        return value

    def whoami(self, ctxt: Any) -> str:
        self._record("whoami", ctxt)
        return self.name

    def note(self, ctxt: Any, value: Any) -> None:
        self._record("note", ctxt, value=value)

    def block(self, ctxt: Any, event_name: str) -> str:
        """Wait until the test sets the named module-level event."""
        self._record("block", ctxt, event_name=event_name)
        EVENTS[event_name].wait(30)
        return "unblocked"

    def block_then_note(self, ctxt: Any, event_name: str) -> None:
        """Like :meth:`block`, and record again once released."""
        self._record("block", ctxt, event_name=event_name)
        EVENTS[event_name].wait(30)
        self._record("released", ctxt, event_name=event_name)

    def unencodable_result(self, ctxt: Any) -> Any:
        self._record("unencodable_result", ctxt)
        return {"lock": threading.Lock()}

    def raise_error(self, ctxt: Any, kind: str) -> None:
        self._record("raise_error", ctxt, kind=kind)
        raise ERRORS[kind]()


EVENTS: dict[str, threading.Event] = {}


class LocalOnlyError(Exception):
    """An exception from a module the caller does not allow to be rebuilt."""


ERRORS: dict[str, Callable[[], BaseException]] = {
    "instance_not_found": lambda: exceptions.InstanceNotFound("inst-1", host="hostB"),
    "driver_not_found": lambda: exceptions.PluginNotFound(
        "virtsdk.compute_drivers", "nope", ["fake", "libvirt"]),
    "invalid_state": lambda: exceptions.InstanceInvalidState(
        "inst-2", "vm_state", "stopped", "live-migrate"
    ),
    "unexpected_task_state": lambda: exceptions.UnexpectedTaskState(
        "inst-3", "migrating", None
    ),
    "destination_disk_exists": lambda: exceptions.DestinationDiskExists(
        "/var/lib/virtsdk/instances/inst-4 already exists"
    ),
    "not_supported": lambda: exceptions.NotSupported("fake", "post-copy", "no QEMU"),
    "key_error": lambda: KeyError("missing"),
    "local_only": lambda: LocalOnlyError("private"),
}
