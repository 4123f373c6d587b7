"""The ``stream`` protocol's JSON messages: bounded parsing and declarative schemas.

Every JSON message a receiver (or sender) reads from the network goes through
:func:`parse`, which refuses input nested deeper than the caller allows *before* the
(recursive) JSON parser sees it, refuses ``NaN``/``Infinity`` and duplicate keys.
:func:`validate` then checks every field's type and range against a schema: the
field rules of :mod:`virtsdk.validation` (``Text``, ``Integer``, ``Number``) composed
with the containers below.  Any violation raises :class:`BadMessage` naming the
field (``offer.files[2].size``) and the rule it broke; nothing else escapes, so a
peer's malformed input can only ever earn an ``invalid`` reply.

The protocol's messages and their schemas are in :mod:`virtsdk.transfer.protocol`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from virtsdk.exceptions import InvalidInput, shown


class BadMessage(InvalidInput):
    """A protocol message that is not well formed or breaks its schema."""


class Rule(Protocol):
    """What :mod:`virtsdk.validation`'s field rules and the containers here share."""

    def check(self, field: str, value: Any, error: type[InvalidInput] = InvalidInput) -> Any:
        ...


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
    raise BadMessage("message", f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise BadMessage("message", "an object names the same key twice")
    return out


def parse(data: bytes, max_depth: int) -> Any:
    """Decode one JSON message of at most ``max_depth`` nested arrays/objects (a
    flat object is depth 1).  Raises BadMessage for anything else."""
    if nesting_depth(data, max_depth) > max_depth:
        raise BadMessage("message", f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_constant=_no_constant,
                          object_pairs_hook=_unique_keys)
    except BadMessage:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadMessage("message", f"not JSON: {str(exc)[:80]}") from None


# -- containers and one-of, in the style of virtsdk.validation's field rules --------------


@dataclass(frozen=True)
class OneOf:
    """One of a few strings."""

    values: frozenset[str]

    def check(self, field: str, value: Any, error: type[InvalidInput] = InvalidInput) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise error(field, f"{shown(value)} is not one of: "
                        f"{', '.join(sorted(self.values))}")
        return value


@dataclass(frozen=True)
class Nullable:
    """``null`` or a value following ``rule``."""

    rule: Rule

    def check(self, field: str, value: Any, error: type[InvalidInput] = InvalidInput) -> Any:
        return None if value is None else self.rule.check(field, value, error)


@dataclass(frozen=True)
class List:
    """A list of ``min_len``..``max_len`` items, each following ``item``."""

    item: Rule
    max_len: int
    min_len: int = 0

    def check(self, field: str, value: Any,
              error: type[InvalidInput] = InvalidInput) -> list[Any]:
        if not isinstance(value, list):
            raise error(field, f"must be a list, not {type(value).__name__}")
        if not self.min_len <= len(value) <= self.max_len:
            raise error(field, f"has {len(value)} items; {self.min_len} to {self.max_len} "
                        "are allowed")
        return [self.item.check(f"{field}[{i}]", v, error) for i, v in enumerate(value)]


@dataclass(frozen=True)
class Object:
    """A JSON object with exactly the ``required`` keys, any of the ``optional`` ones
    and nothing else, each value following its rule."""

    required: Mapping[str, Rule]
    optional: Mapping[str, Rule] = field(default_factory=dict)

    def check(self, field: str, value: Any,
              error: type[InvalidInput] = InvalidInput) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise error(field, f"must be an object, not {type(value).__name__}")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise error(field, f"lacks {', '.join(missing)}")
        unknown = [k for k in value if k not in self.required and k not in self.optional]
        if unknown:
            raise error(field, f"has unknown keys {', '.join(shown(k) for k in unknown[:5])}")
        rules = {**self.optional, **self.required}
        return {k: rules[k].check(f"{field}.{k}", v, error) for k, v in value.items()}


def validate(value: Any, rule: Rule, name: str) -> Any:
    """``value`` checked against ``rule``; errors are :class:`BadMessage` naming
    ``name`` and the field inside it."""
    return rule.check(name, value, BadMessage)
