"""Live-migration options of the libvirt driver (group ``[libvirt]``).

Declared here and returned by :func:`list_opts`, which the driver's
``LibvirtDriver.list_opts`` includes, so they are registered in the driver's own group
(its entry-point name, ``libvirt``) when the driver is built.  Read on the source host
(URI, flags, bandwidth, parallel connections) and on the destination host (inbound
address, VIF plugging retries).
"""

from __future__ import annotations

from oslo_config import cfg, types

#: Names accepted by ``live_migration_extra_flags`` and their libvirt flag names.
EXTRA_FLAG_NAMES: dict[str, str] = {
    "compressed": "VIR_MIGRATE_COMPRESSED",
    "abort_on_error": "VIR_MIGRATE_ABORT_ON_ERROR",
    "change_protection": "VIR_MIGRATE_CHANGE_PROTECTION",
    "unsafe": "VIR_MIGRATE_UNSAFE",
    "auto_converge": "VIR_MIGRATE_AUTO_CONVERGE",
    "postcopy": "VIR_MIGRATE_POSTCOPY",
}

live_opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "live_migration_scheme",
        default="tcp",
        choices=["tcp", "tls", "ssh"],
        help="Transport of the peer-to-peer libvirt connection from the source libvirtd "
        "to the destination: the URI is qemu+<scheme>://<destination>/system.",
    ),
    cfg.StrOpt(
        "live_migration_uri_template",
        default=None,
        help="Full destination connection URI with one {host} placeholder, e.g. "
        "'qemu+tcp://{host}:16509/system'.  Overrides live_migration_scheme.",
    ),
    cfg.HostAddressOpt(
        "live_migration_inbound_addr",
        default=None,
        help="Address other hosts use to reach this host for live-migration traffic "
        "(libvirt connection and QEMU data stream).  Returned by pre_live_migration on "
        "the destination; when unset the destination's host name is used.",
    ),
    cfg.IntOpt(
        "live_migration_bandwidth",
        default=0,
        min=0,
        help="Maximum bandwidth of a live migration in MiB/s; 0 means unlimited.",
    ),
    cfg.BoolOpt(
        "live_migration_permit_post_copy",
        default=False,
        help="Start migrations with VIR_MIGRATE_POSTCOPY so that they can be switched "
        "to post-copy (by a convergence policy or live_migration_force_complete).",
    ),
    cfg.BoolOpt(
        "live_migration_permit_auto_converge",
        default=False,
        help="Start migrations with VIR_MIGRATE_AUTO_CONVERGE (QEMU throttles the "
        "guest's vCPUs when memory does not converge).",
    ),
    cfg.BoolOpt(
        "live_migration_with_native_tls",
        default=False,
        help="Encrypt the QEMU migration stream with QEMU's native TLS "
        "(VIR_MIGRATE_TLS); both hosts need certificates configured in qemu.conf.",
    ),
    cfg.IntOpt(
        "live_migration_parallel_connections",
        default=0,
        min=0,
        max=255,
        help="Number of parallel connections for the memory stream (VIR_MIGRATE_PARALLEL); "
        "0 disables multi-connection migration.",
    ),
    cfg.IntOpt(
        "live_migration_retry_count",
        default=30,
        min=1,
        help="Attempts at plugging the VIFs on the destination in pre_live_migration "
        "before it gives up.",
    ),
    cfg.FloatOpt(
        "live_migration_retry_interval",
        default=1.0,
        min=0.0,
        help="Seconds between two VIF plugging attempts in pre_live_migration.",
    ),
    cfg.ListOpt(
        "live_migration_extra_flags",
        default=[],
        item_type=types.String(choices=sorted(EXTRA_FLAG_NAMES)),
        help="Additional libvirt migration flags by short name: "
        + ", ".join(sorted(EXTRA_FLAG_NAMES))
        + ".",
    ),
    cfg.BoolOpt(
        "live_migration_rewrite_xml",
        default=True,
        help="Rewrite the migratable domain XML for the destination (listen addresses, "
        "paths, VIFs).  Turning it off reproduces the legacy behaviour, which fails for "
        "guests whose consoles listen on the source's own address.",
    ),
]


def list_opts() -> list[cfg.Opt]:
    """The live-migration options; included by ``LibvirtDriver.list_opts``."""
    return list(live_opts)
