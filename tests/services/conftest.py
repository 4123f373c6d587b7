"""Fixtures for the services tests: a private RabbitMQ for the run and a
multi-process cloud (one ``virtsdk-conductor`` and one ``virtsdk-compute`` per host,
each its own process tree) on the fake driver, sharing its fabric through a
directory and its state through one database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from virtsdk_lab.broker import PrivateRabbit

from virtsdk.db.api import Database

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def rabbit() -> Iterator[PrivateRabbit]:
    broker = PrivateRabbit()
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


class ProcessCloud:
    """Config files and service processes of one multi-process test cloud."""

    def __init__(self, root: Path, transport_url: str, hosts: tuple[str, ...],
                 driver: str = "fake", extra: str = "",
                 host_extra: dict[str, str] | None = None,
                 host_prefix: dict[str, list[str]] | None = None) -> None:
        """``extra``: more config for every service; ``host_extra[host]``: more for
        that host's compute; ``host_prefix[host]``: a command prefix that runs that
        compute elsewhere (a lab host's namespaces)."""
        self.root = root
        self.hosts = hosts
        self.host_extra = host_extra or {}
        self.host_prefix = host_prefix or {}
        self.db_url = f"sqlite:///{root / 'virtsdk.sqlite'}"
        self.conf = root / "virtsdk.conf"
        fake = (f"[fake]\nfabric = mp-{uuid.uuid4().hex[:8]}\n"
                f"fabric_dir = {root / 'fabric'}\ntime_scale = 0.001\n"
                if driver == "fake" else "")
        self.conf.write_text(
            "[DEFAULT]\n"
            f"transport_url = {transport_url}\n"
            f"control_exchange = vsdk-{uuid.uuid4().hex[:10]}\n"
            f"state_path = {root / 'state'}\n"
            f"compute_driver = {driver}\n"
            "graceful_shutdown_timeout = 20\n"
            "[database]\n"
            f"connection = {self.db_url}\n"
            "[compute]\n"
            "report_interval = 0.5\n"
            "service_down_time = 3\n"
            + fake +
            "[oslo_messaging_notifications]\n"
            "driver = noop\n" + extra)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.db = Database(self.db_url)  # creates the schema before any service starts

    def host_conf(self, host: str) -> Path:
        path = self.root / f"{host}.conf"
        path.write_text(f"[DEFAULT]\nhost = {host}\n" + self.host_extra.get(host, ""))
        return path

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start ``conductor`` or the compute service of host ``name``."""
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        if name == "conductor":
            cmd = [str(BIN / "virtsdk-conductor"), "--config-file", str(self.conf)]
        else:
            cmd = [*self.host_prefix.get(name, []), str(BIN / "virtsdk-compute"),
                   "--config-file", str(self.conf), "--config-file", str(self.host_conf(name))]
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def up(self) -> set[str]:
        """Hosts whose compute service is up, plus "conductor" if one is."""
        now = _now()
        names = set()
        for svc in self.db.service_get_all(None):
            if svc.is_up(3, now):
                names.add("conductor" if svc.binary == "virtsdk-conductor" else svc.host)
        return names

    def wait_up(self, names: tuple[str, ...], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(names) <= self.up():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None and name in names:
                    raise AssertionError(f"{name} exited {proc.returncode}:\n"
                                         + self.log(name))
            time.sleep(0.2)
        raise AssertionError(f"services {names} not up:\n"
                             + "\n".join(self.log(n) for n in self.procs))

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process tree of ``name`` (master and worker)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                self.kill(name, signal.SIGTERM)
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(name)
        self.db.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@pytest.fixture
def process_cloud(tmp_path: Path, rabbit: PrivateRabbit) -> Iterator[ProcessCloud]:
    cloud = ProcessCloud(tmp_path, rabbit.url, ("mpA", "mpB"))
    try:
        yield cloud
    finally:
        cloud.stop_all()
