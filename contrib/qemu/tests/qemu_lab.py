"""Helpers of the qemu driver tests on the lab (also used by the benchmarks).

``make_qemu_driver(lab_host, **overrides)`` builds a :class:`QemuDriver` for one lab host
with its own fresh ``cfg.ConfigOpts`` (``[qemu] instances_path``, ``my_ip``,
``host_exec_prefix`` from the host, ``accel = tcg``); ``clean_qemu_dir`` stops every QEMU
whose files are under a directory and empties it.  QEMU runs in the host's network
namespace through its ``exec_prefix``; no libvirtd is involved.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from oslo_config import cfg
from virtsdk_qemu.driver import QemuDriver

from virtsdk.objects import Flavor, ImageMeta, Instance
from virtsdk.plugins import register_opts

#: a subdirectory of each lab host's directory, so the libvirt tests' clean-up and
#: ours never meet
QEMU_DIR = "qemu"


def make_qemu_conf(lab_host: Any, instances_path: str | None = None,
                   **overrides: Any) -> cfg.ConfigOpts:
    """A fresh ConfigOpts with ``[qemu]`` pointing at ``lab_host``; ``overrides`` are
    ``[qemu]`` options or ``"group.option"`` keys of other groups."""
    conf = cfg.ConfigOpts()
    register_opts(conf, QemuDriver)
    conf([], project="virtsdk-test", default_config_files=[])
    values: dict[str, Any] = {
        "instances_path": instances_path or str(Path(lab_host.host_dir) / QEMU_DIR),
        "my_ip": lab_host.address,
        "host_exec_prefix": list(lab_host.exec_prefix),
        "accel": "tcg",
        "qmp_timeout": 60.0,
    }
    values.update(overrides)
    for key, value in values.items():
        group, _, name = key.rpartition(".")
        if group and group != "qemu":
            if group == "live_migration":
                from virtsdk.live_migration import opts as lm_opts

                lm_opts.register_opts(conf)
            elif group == "disk_transfer":
                from virtsdk.transfer.base import DiskTransport, register_transport_opts

                register_transport_opts(conf, DiskTransport)
            elif group.startswith("transport_"):
                from virtsdk.transfer.base import load_transport

                load_transport(group.removeprefix("transport_"), conf)
            conf.set_override(name, value, group=group)
        else:
            conf.set_override(name, value, group="qemu")
    return conf


def make_qemu_driver(lab_host: Any, instances_path: str | None = None,
                     **overrides: Any) -> QemuDriver:
    driver = QemuDriver(make_qemu_conf(lab_host, instances_path, **overrides),
                        lab_host.name)
    driver.init_host(lab_host.name)
    return driver


def clean_qemu_dir(root: Path) -> None:
    """Stop every QEMU whose files are under ``root`` (any host tag) and empty it,
    keeping the image cache."""
    from virtsdk_qemu.guest import Guest

    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and child.name != "_base":
            for pidfile in child.glob("qemu-*.pid"):
                tag = pidfile.name.removeprefix("qemu-").removesuffix(".pid")
                Guest(child, tag, 10.0, []).kill()
            shutil.rmtree(child, ignore_errors=True)
        elif child.is_file():
            child.unlink()


def small_flavor(name: str = "tiny", memory_mb: int = 128, root_gb: int = 0,
                 ephemeral_gb: int = 0) -> Flavor:
    return Flavor(name=name, memory_mb=memory_mb, vcpus=1, root_gb=root_gb,
                  ephemeral_gb=ephemeral_gb)


def new_instance(name: str, image: ImageMeta, flavor: Flavor | None = None) -> Instance:
    return Instance(name=name, flavor=flavor or small_flavor(), image=image)
