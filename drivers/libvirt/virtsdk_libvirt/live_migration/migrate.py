"""Flags, parameters and the libvirt call that starts a live migration.

Used on the source host by :class:`virtsdk_libvirt.live_migration.LiveMigrator`
(``live_migration``).  Flags and parameters are computed by pure functions from the
driver's ``[libvirt]`` options, the block-migration decision and the flags the
convergence policies ask for; :func:`start_migration` makes the one blocking libvirt
call (``migrateToURI3``) and falls back to the legacy ``migrateToURI`` when libvirt
answers VIR_ERR_CONFIG_UNSUPPORTED, after checking the guest can start on the
destination with its XML unchanged.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

import libvirt
from lxml import etree
from oslo_config import cfg

from virtsdk.exceptions import Invalid, MigrationError
from virtsdk.validation import validate_hostname
from virtsdk_libvirt.live_migration.opts import EXTRA_FLAG_NAMES
from virtsdk_libvirt.live_migration.xml_rewrite import check_can_migrate_as_is, paths_under

LOG = logging.getLogger(__name__)

BASE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)

#: Flags a convergence policy may request through ``migration_flags()``.
POLICY_FLAGS: dict[str, int] = {
    "auto_converge": libvirt.VIR_MIGRATE_AUTO_CONVERGE,
    "postcopy": libvirt.VIR_MIGRATE_POSTCOPY,
}


def migration_flags(
    lv_conf: cfg.ConfigOpts.GroupAttr, block_migration: bool, policy_flags: Iterable[str] = ()
) -> int:
    """The ``virDomainMigrateFlags`` for one migration.

    ``lv_conf`` is the driver's ``[libvirt]`` group.  Always LIVE | PEER2PEER |
    PERSIST_DEST | UNDEFINE_SOURCE; NON_SHARED_INC for a block migration; POSTCOPY,
    AUTO_CONVERGE, TLS, PARALLEL from the options; plus whatever the policies request
    (unknown names raise Invalid).  Post-copy is dropped for block migrations: QEMU
    cannot mirror disks once the guest runs on the destination.
    """
    flags = BASE_FLAGS
    if block_migration:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    if lv_conf.live_migration_permit_post_copy:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if lv_conf.live_migration_permit_auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if lv_conf.live_migration_with_native_tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if lv_conf.live_migration_parallel_connections > 0:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
    for name in lv_conf.live_migration_extra_flags:
        flags |= getattr(libvirt, EXTRA_FLAG_NAMES[name])
    for name in policy_flags:
        if name not in POLICY_FLAGS:
            raise Invalid(
                f"a convergence policy asked for migration flag {name!r}; known: "
                + ", ".join(sorted(POLICY_FLAGS))
            )
        flags |= POLICY_FLAGS[name]
    if block_migration and flags & libvirt.VIR_MIGRATE_POSTCOPY:
        LOG.warning("post-copy is not used for a block migration")
        flags &= ~libvirt.VIR_MIGRATE_POSTCOPY
    return flags


def _uri_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def destination_uri(lv_conf: cfg.ConfigOpts.GroupAttr, host: str) -> str:
    """The libvirt URI the source libvirtd connects to (peer to peer).

    ``host`` is validated first (it is substituted into a URI); raises InvalidHostname.
    """
    validate_hostname(host)
    template = lv_conf.live_migration_uri_template
    if template:
        return str(template).format(host=_uri_host(host))
    return f"qemu+{lv_conf.live_migration_scheme}://{_uri_host(host)}/system"


def migrate_uri(host: str) -> str:
    """The QEMU data-stream URI (``tcp://host``), so the stream goes to ``host``."""
    validate_hostname(host)
    return f"tcp://{_uri_host(host)}"


def local_disk_targets(root: etree._Element) -> list[str]:
    """Target devices of the file-backed, writable disks: what a block migration
    copies (volumes, CD-ROMs and read-only disks are not copied)."""
    out = []
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        if (
            disk.get("type") == "file"
            and disk.get("device", "disk") == "disk"
            and disk.find("readonly") is None
            and disk.find("source") is not None
            and target is not None
            and target.get("dev")
        ):
            out.append(target.get("dev", ""))
    return out


#: Start parameters a convergence policy may set (``migration_params()``), by name.
POLICY_PARAMS: dict[str, str] = {
    "cpu_throttle_initial": libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL,
    "cpu_throttle_increment": libvirt.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT,
}


def migration_params(
    *,
    dest_xml: str | None,
    data_uri: str,
    bandwidth_mib: int,
    disks: list[str] | None,
    parallel_connections: int,
    policy_params: dict[str, int] | None = None,
    postcopy_bandwidth_mib: int = 0,
) -> dict[str, Any]:
    """The typed parameters of ``migrateToURI3``.

    ``dest_xml`` goes in both DEST_XML and PERSIST_XML (the definition the destination
    runs and keeps); ``disks`` (block migration only) restricts what NON_SHARED_INC
    mirrors; ``bandwidth_mib`` 0 means unlimited and is left out, and so is
    ``postcopy_bandwidth_mib`` 0 (the post-copy phase is then unlimited: QEMU's
    default).  ``policy_params`` are the convergence
    policies' start parameters (:data:`POLICY_PARAMS`; unknown names raise Invalid).
    """
    params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_URI: data_uri}
    if dest_xml is not None:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
        params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = dest_xml
    if bandwidth_mib > 0:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(bandwidth_mib)
    if postcopy_bandwidth_mib > 0:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = int(postcopy_bandwidth_mib)
    for name, value in (policy_params or {}).items():
        if name not in POLICY_PARAMS:
            raise Invalid(f"a convergence policy asked for migration parameter {name!r}; "
                          "known: " + ", ".join(sorted(POLICY_PARAMS)))
        params[POLICY_PARAMS[name]] = int(value)
    if disks:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(disks)
    if parallel_connections > 0:
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(parallel_connections)
    return params


def start_migration(
    domain: libvirt.virDomain,
    dest_uri: str,
    params: dict[str, Any],
    flags: int,
    source_xml: etree._Element,
    moved_dirs: Iterable[str] = (),
) -> str:
    """Run the migration (blocks until libvirt's job ends); returns the call used.

    Tries ``migrateToURI3``; if libvirt answers VIR_ERR_CONFIG_UNSUPPORTED (it cannot
    take a destination XML or one of the parameters) it checks that ``source_xml`` can
    start on the destination unchanged (raises ListenAddressError otherwise, before
    anything moved) and calls ``migrateToURI(dest_uri, flags, None, bandwidth)``.
    ``moved_dirs`` are source directories that have another name on the destination:
    the legacy call cannot re-root them, so a guest with files there is refused.
    Any other libvirt error propagates.
    """
    try:
        domain.migrateToURI3(dest_uri, params, flags)
        return "migrateToURI3"
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_CONFIG_UNSUPPORTED:
            raise
        LOG.warning("migrateToURI3 unsupported (%s); falling back to migrateToURI", exc)
    check_can_migrate_as_is(source_xml)
    stuck = paths_under(source_xml, moved_dirs)
    if stuck:
        raise MigrationError(
            f"libvirt cannot take a destination XML and {stuck[0]} lives in a directory "
            "that has another path on the destination; refusing the legacy migration"
        )
    bandwidth = int(params.get(libvirt.VIR_MIGRATE_PARAM_BANDWIDTH, 0))
    domain.migrateToURI(dest_uri, flags, None, bandwidth)
    return "migrateToURI"
