"""Validation of untrusted input: hostnames, relative paths and field rules.

Called wherever data from another host or from a user is about to enter a URI, a
command line, a filesystem path or the database (the API, the compute manager,
drivers).  Every function either returns a safe value or raises a
:class:`virtsdk.exceptions.Invalid` subclass naming the offending input; none of them
touches anything.

The field rules (:class:`Text`, :class:`Integer`, :class:`Choice`, :class:`Mapping`)
are small declarative objects; the API lists one per user-supplied field in
:mod:`virtsdk.api.fields`, so SQLite (which does not enforce ``String(255)``) and
PostgreSQL (which raises its own driver errors) see only values that fit.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import math
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from virtsdk.exceptions import InvalidHostname, InvalidInput, UnsafePath, shown

#: Largest value of a 32-bit signed SQL ``Integer`` (MiB, GiB and vCPU counts).
INT32_MAX = 2**31 - 1
#: Largest value of a 64-bit signed SQL ``BigInteger`` (byte counts, row ids).
INT64_MAX = 2**63 - 1

# Unicode categories never accepted in text fields: control characters (NUL, newline,
# ESC...), lone surrogates (not encodable as UTF-8) and the line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_MULTILINE_ALLOWED = frozenset("\t\n\r")


@dataclasses.dataclass(frozen=True)
class Text:
    """A string of ``min_len``..``max_len`` characters with no control characters,
    lone surrogates or line separators (``multiline`` allows tab, CR and LF) and, if
    ``strip``, no leading or trailing whitespace."""

    max_len: int
    min_len: int = 1
    multiline: bool = False
    strip: bool = True

    def check(self, field: str, value: Any, error: type[InvalidInput] = InvalidInput) -> str:
        if not isinstance(value, str):
            raise error(field, f"must be a string, not {type(value).__name__}")
        if len(value) < self.min_len:
            raise error(field, "must not be empty" if self.min_len == 1 else
                        f"must have at least {self.min_len} characters")
        if len(value) > self.max_len:
            raise error(field, f"has {len(value)} characters; at most {self.max_len} "
                        "are allowed")
        for index, char in enumerate(value):
            if unicodedata.category(char) in _REFUSED_CATEGORIES and not (
                    self.multiline and char in _MULTILINE_ALLOWED):
                raise error(field, f"contains the control character U+{ord(char):04X} at "
                            f"position {index}")
        if self.strip and value != value.strip():
            raise error(field, "must not begin or end with whitespace")
        return value


@dataclasses.dataclass(frozen=True)
class Integer:
    """An ``int`` (not a bool) in ``minimum``..``maximum``."""

    minimum: int
    maximum: int

    def check(self, field: str, value: Any, error: type[InvalidInput] = InvalidInput) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise error(field, f"must be an integer, not {type(value).__name__}")
        if not self.minimum <= value <= self.maximum:
            raise error(field, f"{shown(value)} is out of range "
                        f"{self.minimum}..{self.maximum}")
        return value


@dataclasses.dataclass(frozen=True)
class Number:
    """A finite ``int`` or ``float`` (not a bool) in ``minimum``..``maximum``."""

    minimum: float
    maximum: float

    def check(self, field: str, value: Any,
              error: type[InvalidInput] = InvalidInput) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise error(field, f"must be a number, not {type(value).__name__}")
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise error(field, f"{shown(value)} is out of range "
                        f"{self.minimum}..{self.maximum}")
        return value


@dataclasses.dataclass(frozen=True)
class Choice:
    """A member of the enum ``of`` (or its value); returns the member."""

    of: type[enum.Enum]

    def check(self, field: str, value: Any,
              error: type[InvalidInput] = InvalidInput) -> enum.Enum:
        try:
            return self.of(value)
        except (ValueError, TypeError):
            allowed = ", ".join(str(m.value) for m in self.of)
            raise error(field, f"{shown(value)} is not one of: {allowed}") from None


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A ``dict`` of at most ``max_items`` entries whose keys follow ``key`` and
    values follow ``value``."""

    key: Text
    value: Text
    max_items: int

    def check(self, field: str, value: Any,
              error: type[InvalidInput] = InvalidInput) -> dict[str, str]:
        if not isinstance(value, dict):
            raise error(field, f"must be a mapping, not {type(value).__name__}")
        if len(value) > self.max_items:
            raise error(field, f"has {len(value)} entries; at most {self.max_items} "
                        "are allowed")
        for k, v in value.items():
            self.key.check(f"{field} key", k, error)
            self.value.check(f"{field} value of {shown(k)}", v, error)
        return dict(value)


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")  # one DNS label, with fullmatch


def validate_hostname(hostname: str) -> str:
    """Return ``hostname`` if it is a DNS name (RFC 1123) or an IP address.

    Anything else (empty, spaces, ``/``, ``@``, ``:``, ``?``, quotes, shell or URI
    metacharacters, over-long labels) raises InvalidHostname.
    """
    if not isinstance(hostname, str) or not hostname or len(hostname) > 253:
        raise InvalidHostname(str(hostname))
    try:
        ipaddress.ip_address(hostname)
        return hostname
    except ValueError:
        pass
    name = hostname[:-1] if hostname.endswith(".") else hostname
    if not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise InvalidHostname(hostname)
    return hostname


def confine_path(root: str | os.PathLike[str], relative: str) -> Path:
    """Resolve ``relative`` under ``root`` and refuse anything that leaves it.

    Rejects absolute paths, ``..`` components, NUL bytes and symlinks (existing ones
    anywhere along the way) that point outside ``root``.  ``root`` itself is trusted.
    """
    root_path = Path(root).resolve()
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise UnsafePath(str(relative), str(root_path))
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise UnsafePath(relative, str(root_path))
    candidate = (root_path / rel).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise UnsafePath(relative, str(root_path))
    return candidate
