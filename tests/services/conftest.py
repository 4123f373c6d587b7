"""Fixtures for the services tests: a multi-process cloud (one ``virtsdk-conductor``
and one ``virtsdk-compute`` per host, each its own process tree) on the fake driver,
sharing its fabric through a directory and its state through one database, on a
virtual host of its own of the session's private RabbitMQ node (``rabbit``,
:mod:`virtsdk.testing.services`)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from virtsdk_lab.deployment import ServiceProcesses

from virtsdk.db import migration
from virtsdk.db.api import Database
from virtsdk.testing.services import RabbitNode

BIN = Path(sys.executable).parent


class ProcessCloud(ServiceProcesses):
    """Config files and service processes of one multi-process test cloud on the
    fake driver (its fabric shared through a directory)."""

    def __init__(self, root: Path, transport_url: str, hosts: tuple[str, ...]) -> None:
        super().__init__(root, f"sqlite:///{root / 'virtsdk.sqlite'}", 3.0)
        self.root = root
        self.hosts = hosts
        #: more configuration for one host's compute (read when it (re)starts)
        self.host_extra: dict[str, str] = {}
        self.conf = root / "virtsdk.conf"
        self.conf.write_text(
            "[DEFAULT]\n"
            f"transport_url = {transport_url}\n"
            f"control_exchange = vsdk-{uuid.uuid4().hex[:10]}\n"
            f"state_path = {root / 'state'}\n"
            "compute_driver = fake\n"
            "graceful_shutdown_timeout = 20\n"
            "[database]\n"
            f"connection = {self.db_url}\n"
            "[compute]\n"
            "report_interval = 0.5\n"
            "service_down_time = 3\n"
            f"[fake]\nfabric = mp-{uuid.uuid4().hex[:8]}\n"
            f"fabric_dir = {root / 'fabric'}\ntime_scale = 0.001\n"
            "[oslo_messaging_notifications]\n"
            "driver = noop\n")
        migration.db_sync(self.db_url)  # virtsdk-manage db sync, before any service
        self.db = Database(self.db_url)

    def host_conf(self, host: str) -> Path:
        path = self.root / f"{host}.conf"
        path.write_text(f"[DEFAULT]\nhost = {host}\n" + self.host_extra.get(host, ""))
        return path

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``conductor`` or the compute service of host ``name``."""
        if name == "conductor":
            return self.spawn(name, [str(BIN / "virtsdk-conductor"),
                                     "--config-file", str(self.conf)])
        return self.spawn(name, [str(BIN / "virtsdk-compute"), "--config-file",
                                 str(self.conf), "--config-file", str(self.host_conf(name))])

    def start_all(self) -> None:
        for name in ("conductor", *self.hosts):
            self.start(name)
        self.wait_up(["conductor", *self.hosts], timeout=60)

    def stop_all(self) -> None:
        self.stop_services()
        self.db.dispose()


@pytest.fixture
def process_cloud(tmp_path: Path, rabbit: RabbitNode) -> Iterator[ProcessCloud]:
    cloud = ProcessCloud(tmp_path, rabbit.url(rabbit.new_vhost()), ("mpA", "mpB"))
    try:
        yield cloud
    finally:
        cloud.stop_all()
