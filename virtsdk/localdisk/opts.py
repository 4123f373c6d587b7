"""Options every driver built on :mod:`virtsdk.localdisk` offers in its own group.

A driver adds :func:`local_storage_opts` to its ``list_opts()``; the options land in the
driver's group (``[libvirt]``, ``[qemu]`` ...), each driver choosing its default
instances directory.  Fresh ``cfg.Opt`` objects on every call, so two drivers never
share one.
"""

from __future__ import annotations

from oslo_config import cfg


def local_storage_opts(instances_path: str) -> list[cfg.Opt]:
    """Instance files, images, this host's address and command prefix, and the
    cold-migration transfer: the settings :mod:`virtsdk.localdisk.coldmigration`
    needs (:class:`~virtsdk.localdisk.coldmigration.DiskMigrationSettings`)."""
    return [
        cfg.StrOpt("instances_path", default=instances_path,
                   help="Directory holding one sub-directory per instance."),
        cfg.StrOpt("image_cache_path", default="",
                   help="Directory of cached base images, kernels and initrds "
                        "(default: <instances_path>/_base)."),
        cfg.ListOpt("image_dirs", default=[],
                    help="Directories images (disk files, kernels, initrds) may be read "
                         "from; an image pointing elsewhere is refused.  Empty: any "
                         "readable file (trusted image metadata only)."),
        cfg.StrOpt("images_type", default="qcow2", choices=["qcow2", "raw"],
                   help="Disk format of new instance disks: qcow2 overlays over a "
                        "cached base image, or flat raw files."),
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
                   help="Seconds the destination waits for the disks of a cold "
                        "migration."),
        cfg.IntOpt("qemu_img_memory_mb", default=1024, min=64,
                   help="Address-space limit of qemu-img when inspecting disk images "
                        "(images received from another host are untrusted)."),
    ]
