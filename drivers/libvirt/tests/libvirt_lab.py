"""Helpers of the libvirt driver tests on the lab (also used by the core's lab tests and
the benchmarks).

``make_driver(lab_host, **overrides)`` builds a :class:`LibvirtDriver` for one lab host
with its own fresh ``cfg.ConfigOpts`` (``[libvirt] connection_uri``, ``instances_path``,
``my_ip``, ``host_exec_prefix`` from the host); ``clean_lab_host`` destroys every domain
of a lab host and empties its instance directory; ``lab_host_overrides`` gives an
``EmbeddedCloud`` each lab host's ``[libvirt]`` section, and ``lab_cloud`` starts one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import libvirt
from oslo_config import cfg
from virtsdk_libvirt.driver import LibvirtDriver

from virtsdk.plugins import register_opts


def make_conf(lab_host: Any, **overrides: Any) -> cfg.ConfigOpts:
    """A fresh ConfigOpts with ``[libvirt]`` pointing at ``lab_host``.

    ``overrides`` are ``[libvirt]`` options, or ``"group.option"`` keys for
    ``[disk_transfer]`` and ``[transport_<name>]`` (e.g.
    ``**{"transport_local.method": "userspace"}``).
    """
    conf = cfg.ConfigOpts()
    register_opts(conf, LibvirtDriver)
    conf([], project="virtsdk-test", default_config_files=[])
    values: dict[str, Any] = {
        "connection_uri": lab_host.libvirt_uri,
        "instances_path": str(lab_host.instances_path),
        "my_ip": lab_host.address,
        "host_exec_prefix": list(lab_host.exec_prefix),
    }
    values.update(overrides)
    for key, value in values.items():
        group, _, name = key.rpartition(".")
        if group and group != "libvirt":
            from virtsdk.transfer.base import (
                DiskTransport,
                load_transport,
                register_transport_opts,
            )

            if group == "disk_transfer":
                register_transport_opts(conf, DiskTransport)
            elif group.startswith("transport_"):
                load_transport(group.removeprefix("transport_"), conf)  # registers its group
            conf.set_override(name, value, group=group)
        else:
            conf.set_override(name, value, group="libvirt")
    return conf


def make_driver(lab_host: Any, **overrides: Any) -> LibvirtDriver:
    """A LibvirtDriver serving ``lab_host`` (its name is the driver's host name)."""
    driver = LibvirtDriver(make_conf(lab_host, **overrides), lab_host.name)
    driver.init_host(lab_host.name)
    return driver


def clean_lab_host(lab_host: Any) -> None:
    """Destroy and undefine every domain of ``lab_host``; empty its instances dir
    (except the image cache, which tests share)."""
    conn = libvirt.open(lab_host.libvirt_uri)
    try:
        for dom in conn.listAllDomains(0):
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()
    root = Path(lab_host.instances_path)
    if root.is_dir():
        for child in root.iterdir():
            if child.name != "_base":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def lab_host_overrides(lab: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """``EmbeddedCloud(host_overrides=...)``: each lab host's own ``[libvirt]`` section."""
    return {h.name: {"libvirt": {"connection_uri": h.libvirt_uri,
                                 "instances_path": str(h.instances_path),
                                 "my_ip": h.address,
                                 "host_exec_prefix": list(h.exec_prefix)}}
            for h in lab.hosts}


def lab_cloud(lab: Any, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
    """A started ``EmbeddedCloud`` with one libvirt compute per lab host: each host's
    ``[libvirt]`` section, the lab's usual ``[compute]`` / ``[libvirt]`` timings, and
    ``overrides`` (group -> options) on top."""
    from virtsdk.cloud import EmbeddedCloud

    common: dict[str, dict[str, Any]] = {
        "compute": {"report_interval": 1.0, "shutdown_timeout": 30,
                    "shutdown_retry_interval": 2},
        "libvirt": {"shutdown_retry_interval": 2}}
    for group, values in (overrides or {}).items():
        common.setdefault(group, {}).update(values)
    return EmbeddedCloud([h.name for h in lab.hosts], "libvirt", overrides=common,
                         host_overrides=lab_host_overrides(lab)).start()


def console_of(cloud: Any, host: str, instance_uuid: str) -> Any:
    """The console log of ``instance_uuid`` on ``host`` of an embedded cloud."""
    from virtsdk_lab.guest import ConsoleLog

    driver = cloud.computes[host].driver
    return ConsoleLog(driver._paths.instance_dir(instance_uuid) / "console.log")
