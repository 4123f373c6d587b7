"""Options of the QEMU driver, group ``[qemu]`` (the driver's entry-point name).

Registered by :func:`virtsdk.plugins.register_opts` through
``QemuDriver.list_opts()``; read on every host through ``driver.qconf``.  Live-migration
monitoring and convergence are the SDK's ``[live_migration]`` group; disk transports
are ``[disk_transfer]`` and ``[transport_<name>]``; the instance-file and disk-transfer
options are the SDK's :func:`virtsdk.localdisk.opts.local_storage_opts`.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk.localdisk.opts import local_storage_opts

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
    *local_storage_opts("/var/lib/virtsdk/qemu/instances"),
    cfg.IntOpt("shutdown_retry_interval", default=10, min=1,
               help="Seconds between ACPI power-button presses when a caller passes no "
                    "retry interval."),
    cfg.FloatOpt("qmp_timeout", default=30.0, min=1.0,
                 help="Seconds to wait for a guest's QMP socket to answer (after start "
                      "and for each command)."),
    cfg.PortOpt("live_migration_port_min", default=49152,
                help="Lowest TCP port a live migration's destination listens on."),
    cfg.PortOpt("live_migration_port_max", default=49215,
                help="Highest TCP port a live migration's destination listens on."),
]


def list_opts() -> list[cfg.Opt]:
    return list(opts)
