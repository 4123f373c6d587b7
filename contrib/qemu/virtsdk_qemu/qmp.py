"""A small synchronous facade over the QEMU project's asyncio QMP client.

:class:`QmpSocket` talks to one guest's QMP unix socket with
:class:`qemu.qmp.QMPClient`.  Every :meth:`QmpSocket.execute` opens a connection,
negotiates, runs one command and disconnects, inside its own ``asyncio.run``: the
driver is called from many threads (the manager's workers, a live-migration monitor,
an abort from the API) and QEMU serves one client per monitor at a time, so calls on
one socket are serialised with a lock and nothing asyncio outlives a call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

from virtsdk.exceptions import VirtSDKError

#: AF_UNIX path limit (sun_path is 108 bytes including the NUL)
MAX_SOCKET_PATH = 107


class QmpUnavailable(VirtSDKError):
    """The guest's QMP socket does not answer (QEMU is not running)."""


class _NotConnected(QmpUnavailable):
    """Connecting or negotiating failed: no command was sent (safe to retry)."""


class QmpCommandError(VirtSDKError):
    """QEMU refused a QMP command; ``error_class`` is QEMU's error class."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        super().__init__(f"QMP {command}: {error_class}: {desc}")


class QmpSocket:
    """One guest's QMP socket at ``path``.  Every QmpSocket object of one path in
    this process shares one lock (QEMU serves one monitor client at a time)."""

    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()
    #: connection attempts when QEMU does not complete the handshake (it may still be
    #: closing the previous client's connection)
    CONNECT_ATTEMPTS = 5

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        with self._locks_guard:
            self._lock = self._locks.setdefault(str(path), threading.Lock())

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run ``command`` and return QEMU's ``return`` value.

        Raises QmpUnavailable when nothing answers and QmpCommandError when QEMU
        refused the command.
        """
        return self.execute_all([(command, arguments)])[0]

    def execute_all(self, commands: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        """Run ``commands`` in order over one connection and return their ``return``
        values; stops at the first refused one (QmpCommandError)."""
        self.check_path()
        delay = 0.05
        with self._lock:
            for attempt in range(self.CONNECT_ATTEMPTS):
                try:
                    return asyncio.run(self._execute(commands))
                except _NotConnected:
                    if attempt == self.CONNECT_ATTEMPTS - 1 or not self.path.exists():
                        raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def check_path(self) -> None:
        """Raise (a clear error, before QEMU is started) when the socket path does not
        fit in an AF_UNIX address."""
        if len(str(self.path).encode()) > MAX_SOCKET_PATH:
            raise VirtSDKError(f"QMP socket path {self.path} is longer than "
                               f"{MAX_SOCKET_PATH} bytes; choose a shorter instances_path")

    async def _execute(self, commands: list[tuple[str, dict[str, Any] | None]]
                       ) -> list[Any]:
        client = QMPClient(f"virtsdk-qemu:{self.path.parent.name}")
        try:
            await asyncio.wait_for(client.connect(str(self.path)), self.timeout)
        except (TimeoutError, ConnectError, OSError) as exc:
            raise _NotConnected(f"QMP socket {self.path} does not answer: {exc}") from None
        command = ""
        try:
            out = []
            for command, arguments in commands:
                out.append(await asyncio.wait_for(client.execute(command, arguments),
                                                  self.timeout))
            return out
        except ExecuteError as exc:
            raise QmpCommandError(command, exc.error_class, str(exc)) from None
        except (TimeoutError, QMPError, OSError, EOFError) as exc:
            raise QmpUnavailable(f"QMP {command} on {self.path} failed: {exc!r}") from None
        finally:
            try:
                await client.disconnect()
            except (QMPError, OSError, EOFError):
                pass  # QEMU closed the socket first (``quit``)

    def answers(self) -> bool:
        """Whether QEMU answers on the socket."""
        if not self.path.exists():
            return False
        try:
            self.execute("query-status")
            return True
        except (QmpUnavailable, QmpCommandError):
            return False
