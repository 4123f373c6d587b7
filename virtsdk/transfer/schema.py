"""The ``stream`` protocol's JSON messages: bounded parsing and one declarative schema.

Every JSON message a receiver (or sender) reads from the network goes through
:func:`parse`, which refuses input nested deeper than the caller allows *before* the
(recursive) JSON parser sees it, refuses ``NaN``/``Infinity`` and duplicate keys,
and then :func:`validate` checks every field's type and range against a schema
built from the small spec classes below.  Any violation raises
:class:`BadMessage` naming the field (``files[2].size``) and what was wrong with it;
nothing else escapes, so a peer's malformed input can only ever earn an ``invalid``
reply.

The protocol's messages and their schemas are in :mod:`virtsdk.transfer.protocol`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from virtsdk.exceptions import Invalid


class BadMessage(Invalid):
    """A protocol message that is not well formed or breaks its schema."""


#: Characters that matter for nesting: brackets, quotes and string escapes.
_STRUCTURE = re.compile(rb'["\\\[\]{}]')


def nesting_depth(data: bytes, limit: int) -> int:
    """The deepest ``[``/``{`` nesting of the JSON text ``data`` (strings skipped),
    stopping early once it exceeds ``limit``.  Linear in ``len(data)``; does not
    parse and never recurses."""
    depth = deepest = 0
    in_string = False
    skip_to = -1  # the character after a backslash inside a string
    for match in _STRUCTURE.finditer(data):
        pos = match.start()
        if pos < skip_to:
            continue
        char = data[pos]
        if in_string:
            if char == 0x5C:  # backslash: the next character is escaped
                skip_to = pos + 2
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif char in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise BadMessage(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise BadMessage("an object names the same key twice")
    return out


def parse(data: bytes, max_depth: int) -> Any:
    """Decode one JSON message of at most ``max_depth`` nested arrays/objects (a
    flat object is depth 1).  Raises BadMessage for anything else."""
    if nesting_depth(data, max_depth) > max_depth:
        raise BadMessage(f"message nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_constant=_no_constant,
                          object_pairs_hook=_unique_keys)
    except BadMessage:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadMessage(f"not JSON: {str(exc)[:80]}") from None


# -- the schema language ------------------------------------------------------------------


class Spec:
    """One value's type and range; :meth:`check` returns it or raises BadMessage."""

    def check(self, value: Any, where: str) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Spec):
    """An integer in ``[low, high]`` (JSON ``true``/``false`` are not integers)."""

    low: int
    high: int

    def check(self, value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadMessage(f"{where} must be an integer, not {_kind(value)}")
        if not self.low <= value <= self.high:
            raise BadMessage(f"{where} must be between {self.low} and {self.high}")
        return value


@dataclass(frozen=True)
class Number(Spec):
    """A finite int or float in ``[low, high]``."""

    low: float
    high: float

    def check(self, value: Any, where: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) \
                or not math.isfinite(value):
            raise BadMessage(f"{where} must be a number, not {_kind(value)}")
        if not self.low <= value <= self.high:
            raise BadMessage(f"{where} must be between {self.low} and {self.high}")
        return float(value)


@dataclass(frozen=True)
class Str(Spec):
    """A printable string (no control characters, no lone surrogates) of
    ``min_len``..``max_len`` characters; ``choices`` limits it to those values."""

    max_len: int
    min_len: int = 1
    choices: frozenset[str] | None = None

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise BadMessage(f"{where} must be a string, not {_kind(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise BadMessage(f"{where} must have {self.min_len} to {self.max_len} characters")
        if not value.isprintable():
            raise BadMessage(f"{where} contains control or unencodable characters")
        if self.choices is not None and value not in self.choices:
            raise BadMessage(f"{where} must be one of {', '.join(sorted(self.choices))}")
        return value


@dataclass(frozen=True)
class Nullable(Spec):
    """``null`` or a value of ``spec``."""

    spec: Spec

    def check(self, value: Any, where: str) -> Any:
        return None if value is None else self.spec.check(value, where)


@dataclass(frozen=True)
class List(Spec):
    """A list of ``min_len``..``max_len`` items, each of ``item``."""

    item: Spec
    max_len: int
    min_len: int = 0

    def check(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise BadMessage(f"{where} must be a list, not {_kind(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise BadMessage(f"{where} must have {self.min_len} to {self.max_len} items")
        return [self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value)]


@dataclass(frozen=True)
class Object(Spec):
    """A JSON object with exactly the ``required`` keys, any of the ``optional`` ones
    and nothing else."""

    required: Mapping[str, Spec]
    optional: Mapping[str, Spec] = field(default_factory=dict)

    def check(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BadMessage(f"{where} must be an object, not {_kind(value)}")
        missing = [k for k in self.required if k not in value]
        unknown = [k for k in value if k not in self.required and k not in self.optional]
        if missing or unknown:
            what = [f"missing {', '.join(missing)}"] if missing else []
            what += [f"unknown {', '.join(repr(k)[:40] for k in unknown[:5])}"] if unknown \
                else []
            raise BadMessage(f"{where}: {'; '.join(what)}")
        specs = {**self.optional, **self.required}
        return {k: specs[k].check(v, f"{where}.{k}") for k, v in value.items()}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def validate(value: Any, spec: Spec, name: str) -> Any:
    """``value`` checked against ``spec`` (``name`` starts every error message)."""
    return spec.check(value, name)
