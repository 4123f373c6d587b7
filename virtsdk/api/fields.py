"""Every user-supplied field of :class:`virtsdk.api.API` and its rule, in one table.

The API checks its arguments here before it reads or writes anything, so a value
that does not fit the database is refused with an :class:`~virtsdk.exceptions.Invalid`
error on every backend alike (SQLite does not enforce ``String(255)``; PostgreSQL
would raise its own ``StringDataRightTruncation`` or ``NumericValueOutOfRange``).
Text lengths and id ranges are the database columns' (a 32-bit ``Integer`` id column
holds up to 2**31 - 1 on PostgreSQL); MiB, GiB and vCPU counts fit a 32-bit
``Integer``; byte counts a 64-bit ``BigInteger``.  Hostnames follow
:func:`virtsdk.validation.validate_hostname`.

A value given to *look something up* (an instance uuid, a migration id, a flavor
name) that is of the right type but could never have been stored gets the lookup's
not-found error, as any other unknown key would; a value of the wrong type gets
:class:`~virtsdk.exceptions.InvalidInput`.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import BigInteger

from virtsdk.context import RequestContext
from virtsdk.db.models import ActionRow, DrainRow, FlavorRow, InstanceRow, MigrationRow
from virtsdk.exceptions import (
    DrainNotFound,
    FlavorNotFound,
    InstanceNotFound,
    InvalidFlavorInput,
    InvalidInput,
    MigrationNotFound,
    shown,
)
from virtsdk.objects import ImageMeta
from virtsdk.states import MigrationStatus, MigrationType, VMState
from virtsdk.validation import (
    INT32_MAX,
    INT64_MAX,
    Choice,
    Integer,
    Mapping,
    Number,
    Text,
)


def _length(column: Any) -> int:
    """The length of a ``String(n)`` column."""
    return int(column.type.length)


def _int_max(column: Any) -> int:
    """The largest value an integer column holds on every backend (PostgreSQL's
    ``integer`` is 32-bit; SQLite's is always 64-bit)."""
    return INT64_MAX if isinstance(column.type, BigInteger) else INT32_MAX


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")  # used with fullmatch
_SHORT_TEXT = Text(255)
_OPTIONAL_TEXT = Text(255, min_len=0)
_PROPERTIES = Mapping(key=Text(255), value=Text(255, min_len=0, multiline=True,
                                                strip=False), max_items=128)

#: field name (as errors name it) -> rule
FIELDS: dict[str, Any] = {
    "instance name": Text(_length(InstanceRow.__table__.c.name)),
    "instance uuid": Text(_length(InstanceRow.__table__.c.uuid)),
    "instance metadata": _PROPERTIES,
    "flavor name": Text(_length(FlavorRow.__table__.c.name)),
    "flavor memory_mb": Integer(1, INT32_MAX),
    "flavor vcpus": Integer(1, INT32_MAX),
    "flavor root_gb": Integer(0, INT32_MAX),
    "flavor ephemeral_gb": Integer(0, INT32_MAX),
    "flavor swap_mb": Integer(0, INT32_MAX),
    "image id": _SHORT_TEXT,
    "image name": _OPTIONAL_TEXT,
    "image disk_format": Text(32),
    "image location": Text(4096, min_len=0),
    "image size": Integer(0, INT64_MAX),
    "image properties": _PROPERTIES,
    "migration id": Integer(1, _int_max(MigrationRow.__table__.c.id)),
    "drain id": Integer(1, _int_max(DrainRow.__table__.c.id)),
    "migration status": Choice(MigrationStatus),
    "migration type": Choice(MigrationType),
    "vm_state": Choice(VMState),
    "wait timeout": Number(0, 7 * 24 * 3600),
    "wait poll": Number(0.0001, 60),
    # a request's context is recorded with its instance action
    "context request_id": Text(_length(ActionRow.__table__.c.request_id)),
    "context user_id": Text(_length(ActionRow.__table__.c.user_id), min_len=0),
    "context project_id": Text(_length(ActionRow.__table__.c.project_id), min_len=0),
}


def check(field: str, value: Any) -> Any:
    """Check ``value`` against the rule of ``field``; InvalidInput if it breaks it."""
    return FIELDS[field].check(field, value)


def context(ctx: Any) -> None:
    """The request context of an API call that records an instance action."""
    if not isinstance(ctx, RequestContext):
        raise InvalidInput("context", f"must be a RequestContext, not {type(ctx).__name__}")
    for attr in ("request_id", "user_id", "project_id"):
        check(f"context {attr}", getattr(ctx, attr))


def flavor(name: Any, memory_mb: Any, vcpus: Any, root_gb: Any, ephemeral_gb: Any,
           swap_mb: Any) -> None:
    """Every field of a new flavor (InvalidFlavorInput: an InvalidFlavor)."""
    values = {"name": name, "memory_mb": memory_mb, "vcpus": vcpus, "root_gb": root_gb,
              "ephemeral_gb": ephemeral_gb, "swap_mb": swap_mb}
    for attr, value in values.items():
        FIELDS[f"flavor {attr}"].check(f"flavor {attr}", value, InvalidFlavorInput)


def image(value: Any) -> None:
    if not isinstance(value, ImageMeta):
        raise InvalidInput("image", f"must be an ImageMeta, not {type(value).__name__}")
    for attr in ("id", "name", "disk_format", "location", "size", "properties"):
        check(f"image {attr}", getattr(value, attr))


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, f"must be True or False, not {shown(value)}")
    return value


def instance_uuid(value: Any) -> str:
    """An instance uuid to look up: InvalidInput if not a string, InstanceNotFound if it
    could not name an instance."""
    if not isinstance(value, str):
        raise InvalidInput("instance uuid", f"must be a string, not {type(value).__name__}")
    if not _UUID.fullmatch(value):
        raise InstanceNotFound(shown(value, 60))
    return value


def _row_id(kind: str, value: Any, not_found: type[Exception]) -> int:
    """An id of a ``kind`` row to look up: InvalidInput if not an int, ``not_found``
    if out of the id range (no row can have it)."""
    rule = FIELDS[f"{kind} id"]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{kind} id", f"must be an integer, not {type(value).__name__}")
    if not rule.minimum <= value <= rule.maximum:
        raise not_found(f"{kind} {shown(value)} not found")
    return value


def migration_id(value: Any) -> int:
    """A migration id to look up (InvalidInput, or MigrationNotFound out of range)."""
    return _row_id("migration", value, MigrationNotFound)


def flavor_name(value: Any) -> str:
    """A flavor name to look up: InvalidInput if not a string, FlavorNotFound if no
    flavor could have it."""
    if not isinstance(value, str):
        raise InvalidInput("flavor name", f"must be a string, not {type(value).__name__}")
    try:
        check("flavor name", value)
    except InvalidInput:
        raise FlavorNotFound(f"flavor {shown(value)} not found") from None
    return value


def drain_id(value: Any) -> int:
    """A drain id to look up (InvalidInput, or DrainNotFound out of range)."""
    return _row_id("drain", value, DrainNotFound)
