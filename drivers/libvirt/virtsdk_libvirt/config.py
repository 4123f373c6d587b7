"""Options of the libvirt driver, group ``[libvirt]`` (the driver's entry-point name).

Registered by :func:`virtsdk.plugins.register_opts` (when the driver is built) from
``LibvirtDriver.list_opts()``, which also appends the live-migration options of
``virtsdk_libvirt.live_migration.opts``.  Read on every host through ``driver.lv_conf``.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.localdisk.opts import local_storage_opts

GROUP = "libvirt"

libvirt_opts: list[cfg.Opt] = [
    cfg.StrOpt("connection_uri", default="qemu:///system",
               help="libvirt URI of this host's hypervisor, e.g. "
                    "qemu+tcp://198.18.1.2/system."),
    cfg.StrOpt("virt_type", default="qemu", choices=["qemu", "kvm"],
               help="Domain type.  'qemu' is plain emulation (works everywhere); "
                    "'kvm' needs working hardware virtualisation."),
    cfg.StrOpt("cpu_mode", default="maximum",
               choices=["maximum", "host-model", "host-passthrough", "none"],
               help="Guest CPU mode.  'maximum' with migratable='on' is what runs "
                    "stably under plain QEMU emulation (with QEMU's default CPU model a "
                    "Debian guest kernel crashed there)."),
    *local_storage_opts("/var/lib/virtsdk/instances"),
    cfg.IntOpt("shutdown_retry_interval", default=10, min=1,
               help="Seconds between clean shutdown requests when a caller passes no "
                    "retry interval.  The shutdown timeout itself is the caller's "
                    "(the compute manager's [compute] shutdown_timeout)."),
    cfg.IntOpt("boot_timeout", default=60, min=1,
               help="Seconds to wait for a started domain to report running."),
    cfg.IntOpt("connect_retries", default=3, min=0,
               help="How many times to retry opening the libvirt connection."),
    cfg.FloatOpt("connect_retry_interval", default=1.0, min=0,
                 help="Seconds between libvirt connection attempts."),
]


def list_opts() -> list[cfg.Opt]:
    """The driver's own options plus the live-migration ones (when installed)."""
    opts = list(libvirt_opts)
    try:
        from virtsdk_libvirt.live_migration import opts as live_opts
    except ImportError:
        return opts
    extra = getattr(live_opts, "list_opts", None)
    if callable(extra):
        names = {o.dest for o in opts}
        opts.extend(o for o in extra() if o.dest not in names)
    return opts
