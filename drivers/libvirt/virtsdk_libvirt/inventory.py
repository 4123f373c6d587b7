"""What the libvirt hypervisor of one host holds, per instance UUID (for the audit).

Used by :meth:`LibvirtDriver.list_instance_uuids_on_host` (the reconcile task and
``virtsdk audit``).  It reads two things and touches nothing:

* the domains libvirt has (running or defined-but-off) that carry this project's
  ``<metadata>`` element (a domain some other tool defined is never listed, so the
  audit can never remove it);
* the entries of ``[libvirt] instances_path``: ``<uuid>/`` instance directories and
  ``<uuid>_resize/`` kept copies (see :mod:`virtsdk_libvirt.paths`).

What each combination means, in the kinds of :data:`virtsdk.driver.HELD_KINDS`:

===============================================  ==================================
found                                            held
===============================================  ==================================
a domain, its directory ``<uuid>/`` or no         ``instance``
``<uuid>_resize/`` (a guest, running or off)
``<uuid>_resize/`` (with or without the domain    ``resize_copy``: during a resize
when ``<uuid>/`` is gone)                         the source's domain stays defined
                                                  and powered off while its files
                                                  are in ``<uuid>_resize/``; both
                                                  are the kept copy
``<uuid>/`` without a domain, with the marker of  ``incoming``: a prepared live-
``pre_live_migration`` or the probe of a disk     migration target or a disk receive
receive                                           of a cold migration
``<uuid>/`` without a domain, neither marker      ``leftover``: files with no guest
===============================================  ==================================

A directory listed here is this host's only if ``instances_path`` is not shared with
another host: with a shared instance path every host sees the others' directories
(as ``leftover``).  The audit's rules never remove a holding that may be the only
copy of a guest.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import libvirt

from virtsdk.driver import HELD_INCOMING, HELD_INSTANCE, HELD_LEFTOVER, HELD_RESIZE_COPY
from virtsdk.transfer.base import PROBE_PREFIX
from virtsdk_libvirt.guest_config import METADATA_NS
from virtsdk_libvirt.live_migration.pre import INCOMING_MARKER
from virtsdk_libvirt.paths import RESIZE_SUFFIX, checked_uuid

LOG = logging.getLogger(__name__)

#: file-name prefix of the probe a disk receive leaves in the target directory


def _canonical(name: str) -> str | None:
    try:
        uuid = checked_uuid(name)
    except Exception:  # noqa: BLE001 - any non-UUID name is not an instance's
        return None
    return uuid if uuid == name else None


def own_domain_uuids(conn: libvirt.virConnect) -> set[str]:
    """UUIDs of the domains (running or defined) this project defined: those with
    its metadata element.  A domain that goes away while being read is skipped."""
    out: set[str] = set()
    for dom in conn.listAllDomains(0):
        try:
            dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0)
            uuid = dom.UUIDString()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN_METADATA,
                                            libvirt.VIR_ERR_NO_DOMAIN):
                raise
            continue
        out.add(uuid)
    return out


def directories(root: Path) -> tuple[set[str], set[str]]:
    """(UUIDs with an instance directory, UUIDs with a ``_resize`` directory) under
    ``root``; other entries (the image cache, foreign files) are ignored."""
    own: set[str] = set()
    resize: set[str] = set()
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return own, resize
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.endswith(RESIZE_SUFFIX):
            uuid = _canonical(entry.name[: -len(RESIZE_SUFFIX)])
            if uuid is not None:
                resize.add(uuid)
        else:
            uuid = _canonical(entry.name)
            if uuid is not None:
                own.add(uuid)
    return own, resize


def _is_incoming(directory: Path) -> bool:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return False
    return any(n == INCOMING_MARKER or n.startswith(PROBE_PREFIX) for n in names)


def classify(uuid: str, domain: bool, own_dir: Path | None, resize_dir: bool) -> list[str]:
    """The kinds held for one UUID (see the module table).  ``own_dir`` is the
    instance directory when it exists."""
    kinds: list[str] = []
    if domain and (own_dir is not None or not resize_dir):
        kinds.append(HELD_INSTANCE)
    if resize_dir:
        kinds.append(HELD_RESIZE_COPY)
    if not domain and own_dir is not None:
        kinds.append(HELD_INCOMING if _is_incoming(own_dir) else HELD_LEFTOVER)
    return kinds


def held_on_host(conn: libvirt.virConnect, root: Path) -> dict[str, list[str]]:
    """Everything this host holds, per instance UUID (see the module table)."""
    domains = own_domain_uuids(conn)
    own, resize = directories(root)
    out: dict[str, list[str]] = {}
    for uuid in sorted(domains | own | resize):
        kinds = classify(uuid, uuid in domains, root / uuid if uuid in own else None,
                         uuid in resize)
        if kinds:
            out[uuid] = kinds
    return out
