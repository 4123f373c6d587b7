"""Read the test guest's serial console log (protocol in :mod:`.init_script`).

The log is a plain file written by QEMU (``<serial type='file'>``); the reader only
ever reads it, so it works while the guest runs, on any host whose instances path is
visible, and after the guest is gone.  Lines may carry ``\\r`` and kernel messages
may interleave; only well-formed protocol lines are parsed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

_HEARTBEAT = re.compile(r"HEARTBEAT ([0-9a-f]+) (\d+)(?: ([0-9.]+))?\s*$")
_MARKER = re.compile(r"MARKER ([A-Za-z0-9_-]+) (new|found|set)\s*$")
_MEMCHECK = re.compile(r"MEMCHECK ([0-9a-f]{64}) (\d+)\s*$")
_BOOT = re.compile(r"BOOT ([0-9a-f]+)\s*$")
_DIRTY = re.compile(r"DIRTY (\d+) (\d+)\s*$")
_DIRTYSTAT = re.compile(r"DIRTYSTAT (\d+) (\d+)\s*$")


@dataclass(frozen=True)
class Heartbeat:
    boot_id: str
    seq: int
    uptime: float | None


@dataclass(frozen=True)
class Marker:
    token: str
    how: str  # "new", "found" or "set"


@dataclass(frozen=True)
class MemCheck:
    sha256: str
    seq: int


class ConsoleLog:
    """Parsed view of a guest console log at ``path`` (re-read on every call)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def text(self) -> str:
        """The whole log, ``\\r`` removed; empty if the file does not exist yet."""
        try:
            return self.path.read_bytes().decode("utf-8", "replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def _lines(self, start: int = 0) -> list[str]:
        """Complete lines from character offset ``start``: a last line without its
        newline is still being written by the guest (``BOOT 1a30`` of ``BOOT 1a30f2...``)
        and is left for the next read."""
        text = self.text()[start:]
        return text[: text.rfind("\n") + 1].splitlines()

    def _matches(self, pattern: re.Pattern[str]) -> list[re.Match[str]]:
        found = []
        for line in self._lines():
            m = pattern.search(line)
            if m:
                found.append(m)
        return found

    def boot_ids(self) -> list[str]:
        """Boot ids in order of the boots recorded in the log."""
        return [m.group(1) for m in self._matches(_BOOT)]

    def heartbeats(self) -> list[Heartbeat]:
        """Every heartbeat in the log, oldest first."""
        return [
            Heartbeat(m.group(1), int(m.group(2)), float(m.group(3)) if m.group(3) else None)
            for m in self._matches(_HEARTBEAT)
        ]

    def last_heartbeat(self) -> Heartbeat | None:
        beats = self.heartbeats()
        return beats[-1] if beats else None

    def markers(self) -> list[Marker]:
        """Every disk-marker report, oldest first."""
        return [Marker(m.group(1), m.group(2)) for m in self._matches(_MARKER)]

    def marker(self) -> str | None:
        """Token of the most recent disk-marker report, ``None`` if there is none."""
        found = self.markers()
        return found[-1].token if found else None

    def memchecks(self) -> list[MemCheck]:
        """Every memory checksum report, oldest first."""
        return [MemCheck(m.group(1), int(m.group(2))) for m in self._matches(_MEMCHECK)]

    def dirty_kbps(self) -> int | None:
        """The dirtying rate the guest announced, ``None`` if it is not dirtying."""
        found = self._matches(_DIRTY)
        return int(found[-1].group(1)) if found else None

    def dirty_achieved_kbps(self) -> float | None:
        """KiB/s the guest's dirtier actually rewrote so far (last ``DIRTYSTAT``)."""
        found = self._matches(_DIRTYSTAT)
        if not found:
            return None
        kib, centis = int(found[-1].group(1)), int(found[-1].group(2))
        return kib * 100 / centis if centis else None

    def wait_for(self, pattern: str, timeout: float, *, start: int = 0) -> re.Match[str]:
        """Block until a line matching regex ``pattern`` appears; return the match.

        Only lines from character offset ``start`` of the log are considered (pass
        ``len(log.text())`` taken earlier to wait for something *new*).  Raises
        ``TimeoutError`` with the tail of the log after ``timeout`` seconds.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self._lines(start):
                m = regex.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                tail = "\n".join(self.text().splitlines()[-15:])
                raise TimeoutError(
                    f"no line matching {pattern!r} in {self.path} after {timeout:.0f} s; "
                    f"last lines:\n{tail}"
                )
            time.sleep(0.1)

    def wait_for_heartbeat(
        self, timeout: float, *, boot_id: str | None = None, after_seq: int = 0
    ) -> Heartbeat:
        """Block until a heartbeat (of ``boot_id`` if given) with seq > ``after_seq``."""
        deadline = time.monotonic() + timeout
        while True:
            for beat in reversed(self.heartbeats()):
                if (boot_id is None or beat.boot_id == boot_id) and beat.seq > after_seq:
                    return beat
            if time.monotonic() > deadline:
                tail = "\n".join(self.text().splitlines()[-15:])
                raise TimeoutError(
                    f"no heartbeat (boot {boot_id or 'any'}, seq > {after_seq}) in "
                    f"{self.path} after {timeout:.0f} s; last lines:\n{tail}"
                )
            time.sleep(0.1)
