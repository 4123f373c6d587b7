"""Options of the libvirt driver, group ``[libvirt]`` (the driver's entry-point name).

Registered by :func:`virtsdk.plugins.register_opts` (when the driver is built) from
``LibvirtDriver.list_opts()``, which also appends the live-migration options of
``virtsdk_libvirt.live.opts``.  Read on every host through ``driver.lv_conf``.
"""

from __future__ import annotations

from oslo_config import cfg

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
    cfg.StrOpt("instances_path", default="/var/lib/virtsdk/instances",
               help="Directory holding one sub-directory per instance."),
    cfg.StrOpt("image_cache_path", default="",
               help="Directory of cached base images, kernels and initrds "
                    "(default: <instances_path>/_base)."),
    cfg.ListOpt("image_dirs", default=[],
                help="Directories images (disk files, kernels, initrds) may be read "
                     "from; an image pointing elsewhere is refused.  Empty: any "
                     "readable file (trusted image metadata only)."),
    cfg.StrOpt("images_type", default="qcow2", choices=["qcow2", "raw"],
               help="Disk format of new instance disks: qcow2 overlays over a cached "
                    "base image, or flat raw files."),
    cfg.StrOpt("my_ip", default="127.0.0.1",
               help="This host's address: where VNC listens and where migrations "
                    "arrive."),
    cfg.ListOpt("host_exec_prefix", default=[],
                help="Command prefix for programs that must run on this host, e.g. "
                     "'ip,netns,exec,host1' when the host is a network namespace."),
    cfg.StrOpt("disk_transport", default="auto",
               help="Disk transport plugin (group virtsdk.disk_transports) for cold "
                    "migration; 'auto' prefers the network stream transport and "
                    "falls back to 'local'."),
    cfg.IntOpt("disk_transfer_timeout", default=600, min=1,
               help="Seconds the destination waits for the disks of a cold migration."),
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
    cfg.IntOpt("qemu_img_memory_mb", default=1024, min=64,
               help="Address-space limit of qemu-img when inspecting disk images "
                    "(images received from another host are untrusted)."),
]


def list_opts() -> list[cfg.Opt]:
    """The driver's own options plus the live-migration ones (when installed)."""
    opts = list(libvirt_opts)
    try:
        from virtsdk_libvirt.live import opts as live_opts
    except ImportError:
        return opts
    extra = getattr(live_opts, "list_opts", None)
    if callable(extra):
        names = {o.dest for o in opts}
        opts.extend(o for o in extra() if o.dest not in names)
    return opts
