"""Options of the QEMU driver, group ``[qemu]`` (the driver's entry-point name).

Registered by :func:`virtsdk.loader.register_driver_opts` through
``QemuDriver.list_opts()``; read on every host through ``driver.qconf``.  Live-migration
monitoring and convergence are the SDK's ``[live_migration]`` group; disk transports
are ``[disk_transfer]`` and ``[transport_<name>]``.
"""

from __future__ import annotations

from oslo_config import cfg

GROUP = "qemu"

opts: list[cfg.Opt] = [
    cfg.StrOpt("emulator", default="qemu-system-x86_64",
               help="The QEMU system emulator binary (a name on PATH or a path)."),
    cfg.StrOpt("accel", default="auto", choices=["auto", "kvm", "tcg"],
               help="Accelerator: 'kvm' needs a usable /dev/kvm; 'tcg' is plain "
                    "emulation (works everywhere); 'auto' takes KVM when a probe QEMU "
                    "can start a stopped KVM machine with the host CPU, else TCG.  Both "
                    "hosts of a live migration must agree."),
    cfg.StrOpt("machine", default="pc",
               help="QEMU machine type (the same on every host, or live migration "
                    "fails)."),
    cfg.StrOpt("instances_path", default="/var/lib/virtsdk/qemu/instances",
               help="Directory holding one sub-directory per instance: its disks, "
                    "console log, QMP socket, pid file and persisted guest.json."),
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
               help="This host's address: where VNC listens and where live migrations "
                    "arrive."),
    cfg.ListOpt("host_exec_prefix", default=[],
                help="Command prefix for programs that must run on this host (QEMU "
                     "itself, disk receivers), e.g. 'ip,netns,exec,host1' when the host "
                     "is a network namespace."),
    cfg.StrOpt("disk_transport", default="auto",
               help="Disk transport plugin (group virtsdk.disk_transports) for cold "
                    "migration; 'auto' prefers the network stream transport and "
                    "falls back to 'local'."),
    cfg.IntOpt("disk_transfer_timeout", default=600, min=1,
               help="Seconds the destination waits for the disks of a cold migration."),
    cfg.IntOpt("shutdown_retry_interval", default=10, min=1,
               help="Seconds between ACPI power-button presses when a caller passes no "
                    "retry interval."),
    cfg.FloatOpt("qmp_timeout", default=30.0, min=1.0,
                 help="Seconds to wait for a guest's QMP socket to answer (after start "
                      "and for each command)."),
    cfg.IntOpt("qemu_img_memory_mb", default=1024, min=64,
               help="Address-space limit of qemu-img when inspecting disk images "
                    "(images received from another host are untrusted)."),
    cfg.PortOpt("live_migration_port_min", default=49152,
                help="Lowest TCP port a live migration's destination listens on."),
    cfg.PortOpt("live_migration_port_max", default=49215,
                help="Highest TCP port a live migration's destination listens on."),
]


def list_opts() -> list[cfg.Opt]:
    return list(opts)
