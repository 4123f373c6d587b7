"""Entry point for ``oslo-config-generator`` (namespace ``virtsdk``).

Disk-transport groups and driver groups are appended for every installed plugin that
loads, so the sample config shows ``[transport_stream]``, ``[fake]``, ``[libvirt]`` and
any third-party driver's options.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk import conf as conf_pkg


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    from virtsdk import plugins
    from virtsdk.driver import ComputeDriver
    from virtsdk.transfer.base import DiskTransport, common_opts

    out: list[tuple[str | None, list[cfg.Opt]]] = []
    for module in conf_pkg._MODULES:  # noqa: SLF001
        out.extend(module.list_opts())
    out.append(("disk_transfer", list(common_opts)))
    seen: set[str] = set()
    for group, base in ((plugins.DISK_TRANSPORTS, DiskTransport),
                        (plugins.COMPUTE_DRIVERS, ComputeDriver)):
        for info in plugins.describe_all(group, base):
            cls = info.plugin
            if cls is not None and cls.list_opts() and cls.option_group() not in seen:
                seen.add(cls.option_group())
                out.append((cls.option_group(), cls.list_opts()))
    return out
