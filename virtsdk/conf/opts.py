"""Entry point for ``oslo-config-generator`` (namespace ``virtsdk``).

Disk-transport groups and driver groups are appended for every installed plugin that
loads, so the sample config shows ``[transport_stream]``, ``[fake]``, ``[libvirt]`` and
any third-party driver's options.
"""

from __future__ import annotations

from oslo_config import cfg

from virtsdk import conf as conf_pkg


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    from virtsdk.loader import list_drivers
    from virtsdk.transfer.base import list_transport_opts

    out: list[tuple[str | None, list[cfg.Opt]]] = []
    for module in conf_pkg._MODULES:  # noqa: SLF001
        out.extend(module.list_opts())
    out.extend(list_transport_opts())
    for entry in list_drivers():
        if entry.driver_class is not None and entry.driver_class.list_opts():
            out.append((entry.name, entry.driver_class.list_opts()))
    return out
