"""Destination names of transferred files: what a transfer may create under its
``dest_dir`` (on the destination host).

Kept free of heavy imports: the ``stream`` receiver, a process started for each
transfer, imports it, and its start-up is part of every transfer's time.
"""

from __future__ import annotations

import os

from virtsdk.exceptions import UnsafePath
from virtsdk.validation import confine_path

#: Names under ``dest_dir`` that belong to the transports themselves.
STATE_PREFIX = ".virtsdk-"


def check_name(name: str) -> str:
    """Refuse a destination name that is absolute, climbs out, or is a state name."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UnsafePath(str(name), "<dest_dir>")
    if os.path.isabs(name) or ".." in name.split("/"):
        raise UnsafePath(name, "<dest_dir>")
    if any(part.startswith(STATE_PREFIX) for part in name.split("/")):
        raise UnsafePath(name, "<dest_dir>")
    return name


def confine_name(dest_dir: str, name: str) -> str:
    """The absolute destination path of ``name``; raises UnsafePath on any escape."""
    check_name(name)
    return str(confine_path(dest_dir, name))
