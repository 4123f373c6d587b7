"""The lab as a deployment: ``virtsdk lab up --services``.

One ``virtsdk-compute`` runs *inside* each lab host (its network, hostname and mount
namespaces, entered through its libvirtd), talking to its own libvirtd by the local
URI ``qemu:///system`` with no exec prefix; ``virtsdk-conductor``, a private RabbitMQ
node and a private PostgreSQL cluster (:mod:`virtsdk.testing.services`) run in the
root namespace, the broker and the database listening on the lab bridge: every
service, the conductor included, reaches them at the bridge address, as computes on
other machines would.  The operator CLI uses the written ``virtsdk.conf``.

What the root namespace runs is listed in ``<directory>/root.pids`` (process groups,
the broker's private ``epmd`` port, the servers' data directories) so that
:func:`stop_root_services` (called by the lab's teardown) ends and removes them even
when the process that started them is gone; the computes end with their host's
namespace.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from virtsdk.testing.services import (
    PostgresCluster,
    RabbitNode,
    kill_epmd,
    start_postgres,
    start_rabbitmq,
)
from virtsdk_lab.errors import LabError
from virtsdk_lab.host import LabHost

PIDS = "root.pids"
BIN = Path(sys.executable).parent


class ServiceProcesses:
    """Service processes of one cloud sharing ``db_url``: each started in its own
    session (so a signal reaches its master and worker), logging to
    ``<directory>/<name>.log``.  Also used by the multi-process tests on the fake
    driver."""

    def __init__(self, directory: Path, db_url: str, service_down_time: float) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.service_down_time = service_down_time
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process tree of service ``name`` (master and worker)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)

    def up(self) -> set[str]:
        """Hosts whose compute heartbeats, plus "conductor" if a conductor does."""
        from virtsdk.db.api import Database

        db = Database(self.db_url)
        try:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            return {("conductor" if s.binary == "virtsdk-conductor" else s.host)
                    for s in db.service_get_all(None) if s.is_up(self.service_down_time, now)}
        finally:
            db.dispose()

    def wait_up(self, names: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(names) <= self.up():
                return
            for name in names:
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise LabError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            time.sleep(0.3)
        raise LabError(f"services {names} not up after {timeout:.0f} s:\n"
                       + "\n".join(self.log(n) for n in names))

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_services(self) -> None:
        """SIGTERM every service (they finish in-flight work); SIGKILL after 40 s."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.kill(name, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill(name)


class LabDeployment(ServiceProcesses):
    """Config files and service processes of one lab deployment (see the module doc).

    ``hosts``: the lab's hosts; ``gateway``: the root namespace's address on the lab
    bridge; ``directory``: where configs, logs, the database and the pid list go.
    """

    def __init__(self, hosts: list[LabHost], gateway: str, directory: Path,
                 report_interval: float = 1.0, service_down_time: float = 5.0,
                 host_extra: str = "") -> None:
        """``host_extra``: more configuration for every compute (e.g. a
        ``[libvirt] live_migration_bandwidth`` cap)."""
        super().__init__(directory, "", service_down_time)  # db_url: once it runs
        self.hosts = hosts
        self.gateway = gateway
        self.rabbit: RabbitNode | None = None
        self.postgres: PostgresCluster | None = None
        self.transport_url = ""
        self.conf = self.dir / "virtsdk.conf"
        self.report_interval = report_interval
        self.host_extra = host_extra

    # -- configuration ------------------------------------------------------------------

    def write_configs(self) -> None:
        self.conf.write_text(
            "[DEFAULT]\n"
            f"transport_url = {self.transport_url}\n"
            f"control_exchange = vsdk-{uuid.uuid4().hex[:10]}\n"
            f"state_path = {self.dir / 'state'}\n"
            "compute_driver = libvirt\n"
            "graceful_shutdown_timeout = 20\n"
            "[database]\n"
            f"connection = {self.db_url}\n"
            "[compute]\n"
            f"report_interval = {self.report_interval}\n"
            f"service_down_time = {self.service_down_time}\n"
            "shutdown_timeout = 30\n"
            "shutdown_retry_interval = 2\n"
            "[oslo_messaging_notifications]\n"
            "driver = noop\n")
        for host in self.hosts:
            self.host_conf(host).write_text(
                f"[DEFAULT]\nhost = {host.name}\n"
                "[libvirt]\n"
                "connection_uri = qemu:///system\n"
                f"instances_path = {host.instances_path}\n"
                f"my_ip = {host.address}\n"
                "shutdown_retry_interval = 2\n" + self.host_extra)

    def host_conf(self, host: LabHost) -> Path:
        return self.dir / f"{host.name}.conf"

    # -- processes ----------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> LabDeployment:
        """Broker, database, schema, conductor, then one compute per host; returns
        once every service heartbeats.  On failure everything started is stopped."""
        try:
            self.rabbit = start_rabbitmq(bind=(self.gateway,), vhosts=1)
            self._record("dir", self.rabbit.base_dir)
            self._record("epmd", str(self.rabbit.epmd_port))
            self._record("pgid", str(self.rabbit.process.pid))
            self.transport_url = self.rabbit.url(self.rabbit.new_vhost(), host=self.gateway)
            self.postgres = start_postgres(bind=(self.gateway,))
            self._record("dir", self.postgres.base_dir)
            self._record("pgid", str(self.postgres.process.pid))
            name = self.postgres.create_database().rsplit("/", 1)[1]
            self.db_url = self.postgres.url(name, host=self.gateway)
            self.write_configs()
            from virtsdk.db import migration

            migration.db_sync(self.db_url)  # virtsdk-manage db sync, before the services
            self.start_service("conductor")
            for host in self.hosts:
                self.start_service(host.name)
            self.wait_up(["conductor", *[h.name for h in self.hosts]], timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """(Re)start ``conductor`` or the compute service of lab host ``name``."""
        if name == "conductor":
            proc = self.spawn(name, [str(BIN / "virtsdk-conductor"),
                                     "--config-file", str(self.conf)])
            self._record("pgid", str(proc.pid))
            return proc
        host = next(h for h in self.hosts if h.name == name)
        return self.spawn(name, [*host.nsenter_prefix, str(BIN / "virtsdk-compute"),
                                 "--config-file", str(self.conf),
                                 "--config-file", str(self.host_conf(host))])

    # -- real faults --------------------------------------------------------------------

    def stop_broker(self) -> None:
        """Stop RabbitMQ (every connection drops); :meth:`start_broker` brings the
        same node, users and virtual hosts back."""
        assert self.rabbit is not None, "the deployment is not started"
        self.rabbit.stop_broker()

    def start_broker(self) -> None:
        assert self.rabbit is not None, "the deployment is not started"
        self.rabbit.start_broker()
        self._record("pgid", str(self.rabbit.process.pid))

    def restart_database(self) -> None:
        """Stop the PostgreSQL server (every connection is cut) and start it again
        on the same address and data."""
        assert self.postgres is not None, "the deployment is not started"
        self.postgres.restart()
        self._record("pgid", str(self.postgres.process.pid))

    def stop(self) -> None:
        """Every service (gracefully), then the broker and the database (their files
        removed)."""
        self.stop_services()
        if self.rabbit is not None:
            self.rabbit.stop()
        if self.postgres is not None:
            self.postgres.stop()
        (self.dir / PIDS).unlink(missing_ok=True)

    def _record(self, kind: str, value: str) -> None:
        with open(self.dir / PIDS, "a") as fh:
            fh.write(f"{kind} {value}\n")


def stop_root_services(directory: Path) -> None:
    """End what a deployment in ``directory`` recorded in the root namespace, if it
    still runs (its conductor, broker and database: process groups killed, the
    broker's private epmd stopped) and remove the servers' data directories."""
    pids = directory / PIDS
    if not pids.exists():
        return
    records = [line.split(" ", 1) for line in pids.read_text().splitlines() if " " in line]
    for kind, value in records:
        if kind == "pgid":
            try:
                os.killpg(int(value), signal.SIGKILL)
            except (ProcessLookupError, ValueError, PermissionError):
                pass
    for kind, value in records:
        if kind == "epmd" and value.isdigit():
            kill_epmd(int(value))
        elif kind == "dir" and os.path.isabs(value):
            shutil.rmtree(value, ignore_errors=True)
    pids.unlink(missing_ok=True)
