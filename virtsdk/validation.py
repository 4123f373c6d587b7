"""Validation of untrusted input that crosses hosts: hostnames and relative paths.

Called wherever data from another host or from a user is about to enter a URI, a
command line or a filesystem path (the API, the compute manager, drivers).  Every
function either returns a safe value or raises a :class:`virtsdk.exceptions.Invalid`
subclass naming the offending input; none of them touches anything.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from virtsdk.exceptions import InvalidHostname, UnsafePath

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


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
    if not all(_LABEL.match(label) for label in name.split(".")):
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
