"""Private RabbitMQ and PostgreSQL servers for tests, started and stopped by the tests.

Nothing here touches a system-wide service: each server is a child of the test process,
with its own node name / data directory, its own free ports, listening on loopback (and,
on request, on extra addresses such as a lab bridge), and it is stopped with every process
it started (the RabbitMQ node, its private ``epmd``; the PostgreSQL postmaster) when the
fixture ends.  Several test runs on one machine can do this at the same time.

Use it as a pytest plugin (``pytest_plugins = ("virtsdk.testing.services",)``):

``rabbit`` (session)
    a :class:`RabbitNode`; ``rabbit.new_vhost()`` hands out an empty virtual host.
``rabbit_url`` (function)
    ``rabbit://user:password@127.0.0.1:PORT/VHOST`` on a virtual host of its own.
``postgres`` (session)
    a :class:`PostgresCluster`; ``postgres.create_database()`` returns a URL.
``postgres_url`` (function)
    ``postgresql+psycopg://user:password@127.0.0.1:PORT/DB``, an empty database of its own,
    dropped afterwards.

Without pytest, :func:`start_rabbitmq` / :func:`start_postgres` return the same objects
(``stop()`` them); pass ``bind=("198.18.0.1",)`` to listen on extra addresses too.  The
servers come from Debian's ``rabbitmq-server`` and ``postgresql`` packages
(``./dev.sh setup`` installs them).  A missing package skips the fixture's tests with the
reason; a server that does not come up fails them with the end of its log.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

RABBITMQ_SCRIPTS = "/usr/lib/rabbitmq/bin"
#: virtual hosts created at start-up (cheap) and handed out by ``new_vhost``; more are
#: made on demand with ``rabbitmqctl`` (about a second each)
VHOST_POOL = 64
START_TIMEOUT = 120.0


class ServiceUnavailable(RuntimeError):
    """The server's package is not installed (the tests that need it are skipped)."""


class ServiceFailed(RuntimeError):
    """The server did not come up; the message ends with the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``timeout`` (0: SIGKILL
    at once)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM if timeout else signal.SIGKILL)
    try:
        proc.wait(timeout or 10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# -- RabbitMQ ------------------------------------------------------------------------------


@dataclass
class RabbitNode:
    """One private RabbitMQ node (see the module docstring)."""

    nodename: str
    port: int
    user: str
    password: str
    base_dir: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    epmd_port: int
    bind: tuple[str, ...] = ("127.0.0.1",)
    startup_seconds: float = 0.0
    _free_vhosts: list[str] = field(default_factory=list)

    def url(self, vhost: str = "/", host: str = "127.0.0.1") -> str:
        """The oslo.messaging transport URL of ``vhost`` reached through ``host``."""
        path = "" if vhost == "/" else vhost
        return f"rabbit://{self.user}:{self.password}@{host}:{self.port}/{path}"

    def new_vhost(self) -> str:
        """An empty virtual host nobody else was given."""
        if self._free_vhosts:
            return self._free_vhosts.pop()
        name = f"v-{uuid.uuid4().hex[:12]}"
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, self.user, ".*", ".*", ".*")
        return name

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node; returns its output."""
        out = subprocess.run(
            [os.path.join(RABBITMQ_SCRIPTS, "rabbitmqctl"), "-q", *args],
            env=self.env, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise ServiceFailed(f"rabbitmqctl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def queue_depths(self, vhost: str = "/") -> dict[str, int]:
        """``{queue name: ready messages}`` of ``vhost``, as the broker counts them."""
        depths: dict[str, int] = {}
        for line in self.ctl("list_queues", "-p", vhost, "--no-table-headers",
                             "name", "messages").splitlines():
            name, _, count = line.rpartition("\t")
            if name:
                depths[name] = int(count)
        return depths

    def stop_broker(self) -> None:
        """Stop the broker (a real outage: clients lose their connections); its data,
        ports and epmd stay, so :meth:`start_broker` brings the same node back."""
        _stop_process(self.process)

    def start_broker(self) -> None:
        """Start the node again after :meth:`stop_broker`; returns once it accepts
        AMQP connections."""
        if self.process.poll() is None:
            return
        self.process = _spawn_rabbit(self.base_dir, self.env)
        _wait_rabbit(self, time.monotonic())

    def stop(self) -> None:
        """Kill the node (its data is thrown away: no graceful shutdown needed) and its
        private epmd; remove its files."""
        _stop_process(self.process, timeout=0)
        kill_epmd(self.epmd_port, self.env)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def kill_epmd(port: int, env: dict[str, str] | None = None) -> None:
    """Stop the private epmd on ``port`` (it detaches from the node's process group:
    killing the node leaves it running).  It refuses ``-kill`` while a node is still
    registered, and a killed node unregisters only once epmd sees its socket close:
    retry for a few seconds."""
    epmd = shutil.which("epmd") or "epmd"
    deadline = time.monotonic() + 10
    while _port_open("127.0.0.1", port) and time.monotonic() < deadline:
        subprocess.run([epmd, "-port", str(port), "-kill"], env=env or dict(os.environ),
                       capture_output=True, timeout=30, check=False)
        time.sleep(0.1)


def _rabbit_files(base: str, port: int, user: str, password: str,
                  bind: Sequence[str], vhosts: Sequence[str]) -> None:
    definitions = {
        "users": [{"name": user, "password": password, "tags": ["administrator"]}],
        "vhosts": [{"name": v} for v in ["/", *vhosts]],
        "permissions": [{"user": user, "vhost": v, "configure": ".*", "write": ".*",
                         "read": ".*"} for v in ["/", *vhosts]],
    }
    with open(os.path.join(base, "definitions.json"), "w") as f:
        json.dump(definitions, f)
    listeners = "".join(f"listeners.tcp.{i} = {addr}:{port}\n"
                        for i, addr in enumerate(bind, start=1))
    with open(os.path.join(base, "rabbitmq.conf"), "w") as f:
        f.write(listeners + (
            "loopback_users = none\n"
            f"load_definitions = {base}/definitions.json\n"
            "log.file = false\n"
            "log.console = true\n"
            "log.console.level = warning\n"
            # a test machine's disk is often nearly full of other things; never block
            "disk_free_limit.absolute = 1MB\n"
            "vm_memory_high_watermark.relative = 0.9\n"
        ))
    with open(os.path.join(base, "enabled_plugins"), "w") as f:
        f.write("[].\n")


def _spawn_rabbit(base: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(os.path.join(base, "console.log"), "ab") as out:
        return subprocess.Popen([os.path.join(RABBITMQ_SCRIPTS, "rabbitmq-server")], env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=base, start_new_session=True)


def _wait_rabbit(node: RabbitNode, started: float) -> None:
    """Return once the node accepts AMQP connections; ServiceFailed (with the end of
    its log) if it exits or does not within START_TIMEOUT."""
    deadline = started + START_TIMEOUT
    while node.process.poll() is None and time.monotonic() < deadline:
        if _port_open("127.0.0.1", node.port):
            node.startup_seconds = time.monotonic() - started
            return
        time.sleep(0.1)
    raise ServiceFailed(_tail(os.path.join(node.base_dir, "console.log")))


def start_rabbitmq(base_dir: str | None = None, bind: Sequence[str] = (),
                   vhosts: int = VHOST_POOL) -> RabbitNode:
    """Start a private RabbitMQ node listening on 127.0.0.1 and the ``bind`` addresses.

    Returns once it accepts AMQP connections.  Raises :class:`ServiceUnavailable` when
    RabbitMQ is not installed and :class:`ServiceFailed` when it does not come up.
    """
    if not os.access(os.path.join(RABBITMQ_SCRIPTS, "rabbitmq-server"), os.X_OK):
        raise ServiceUnavailable("RabbitMQ is not installed (Debian package rabbitmq-server)")
    base = base_dir or tempfile.mkdtemp(prefix="virtsdk-rabbit-")
    os.makedirs(base, exist_ok=True)
    addresses = ("127.0.0.1", *[a for a in bind if a != "127.0.0.1"])
    last_error = ""
    for _attempt in range(3):  # another run may take a port between our pick and bind
        port, dist_port, epmd_port = free_port(), free_port(), free_port()
        user, password = "virtsdk", secrets.token_hex(12)
        pool = [f"v-{uuid.uuid4().hex[:12]}" for _ in range(vhosts)]
        _rabbit_files(base, port, user, password, addresses, pool)
        nodename = f"virtsdk-{uuid.uuid4().hex[:10]}@localhost"
        env = {
            **os.environ,
            "HOME": base,  # the Erlang cookie lives here: private to this node
            "RABBITMQ_CONF_ENV_FILE": os.path.join(base, "no-rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": nodename,
            "RABBITMQ_CONFIG_FILE": os.path.join(base, "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(base, "advanced.config"),
            "RABBITMQ_MNESIA_BASE": os.path.join(base, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(base, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(base, "enabled_plugins"),
            "RABBITMQ_PID_FILE": os.path.join(base, "rabbit.pid"),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        env.pop("RABBITMQ_ENV_LOADED", None)
        started = time.monotonic()
        proc = _spawn_rabbit(base, env)
        node = RabbitNode(nodename, port, user, password, base, env, proc, epmd_port,
                          addresses, _free_vhosts=pool)
        try:
            _wait_rabbit(node, started)
            return node
        except ServiceFailed as exc:
            last_error = str(exc)
        except BaseException:
            node.stop()
            raise
        _stop_process(proc, 10)
        kill_epmd(epmd_port, env)
        shutil.rmtree(os.path.join(base, "mnesia"), ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)
    raise ServiceFailed(f"RabbitMQ did not start:\n{last_error}")


# -- PostgreSQL ----------------------------------------------------------------------------


def _postgres_bindir() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not candidates:
        raise ServiceUnavailable("PostgreSQL is not installed (Debian package postgresql)")
    return os.path.dirname(candidates[-1])


@dataclass
class PostgresCluster:
    """One private PostgreSQL cluster (see the module docstring)."""

    port: int
    user: str
    password: str
    base_dir: str
    process: subprocess.Popen[bytes]
    bind: tuple[str, ...] = ("127.0.0.1",)
    startup_seconds: float = 0.0
    bindir: str = ""
    run_as: dict[str, Any] = field(default_factory=dict)

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        """The SQLAlchemy URL of ``database`` reached through ``host``."""
        return (f"postgresql+psycopg://{self.user}:{self.password}@{host}:{self.port}/"
                f"{database}")

    def _admin(self) -> Any:
        import sqlalchemy

        return sqlalchemy.create_engine(self.url(), isolation_level="AUTOCOMMIT",
                                        poolclass=sqlalchemy.pool.NullPool)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; returns its URL."""
        import sqlalchemy

        name = name or f"db_{uuid.uuid4().hex[:12]}"
        engine = self._admin()
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting anyone still connected to it."""
        import sqlalchemy

        engine = self._admin()
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    def restart(self) -> None:
        """Stop the server (fast shutdown: every connection is cut) and start it
        again on the same port and data; returns once it accepts connections."""
        self._shutdown()
        started = time.monotonic()
        self.process = _spawn_postgres(self.base_dir, self.bindir, self.port, self.bind,
                                       self.run_as)
        if not _wait_postgres(self, started):
            raise ServiceFailed(f"PostgreSQL did not restart:\n"
                                f"{_tail(os.path.join(self.base_dir, 'postgres.log'))}")

    def _shutdown(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                _stop_process(self.process, 5)

    def stop(self) -> None:
        """Fast shutdown of the postmaster (SIGINT); remove the cluster's files."""
        self._shutdown()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _as_postgres_user() -> dict[str, Any]:
    """initdb and postgres refuse to run as root: run them as ``postgres`` then."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServiceUnavailable("running as root needs the 'postgres' user") from exc
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def start_postgres(base_dir: str | None = None, bind: Sequence[str] = ()) -> PostgresCluster:
    """Make a new cluster (``initdb``) and start it on 127.0.0.1 and the ``bind``
    addresses, password authentication for TCP, its unix socket in its own directory.

    Returns once it accepts connections.  Raises :class:`ServiceUnavailable` /
    :class:`ServiceFailed` as :func:`start_rabbitmq` does.
    """
    bindir = _postgres_bindir()
    creds = _as_postgres_user()
    base = base_dir or tempfile.mkdtemp(prefix="virtsdk-postgres-")
    os.makedirs(base, exist_ok=True)
    if creds:
        os.chown(base, creds["user"], creds["group"])
    data, pwfile = os.path.join(base, "data"), os.path.join(base, "pwfile")
    user, password = "virtsdk", secrets.token_hex(12)
    with open(pwfile, "w") as f:
        f.write(password + "\n")
    if creds:
        os.chown(pwfile, creds["user"], creds["group"])
    started = time.monotonic()
    init = subprocess.run(
        [os.path.join(bindir, "initdb"), "-D", data, "-U", user, f"--pwfile={pwfile}",
         "-A", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"],
        capture_output=True, text=True, timeout=300, check=False, cwd=base, **creds)
    os.unlink(pwfile)
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise ServiceFailed(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    addresses = ("127.0.0.1", *[a for a in bind if a != "127.0.0.1"])
    with open(os.path.join(data, "pg_hba.conf"), "a") as f:
        for addr in addresses[1:]:
            f.write(f"host all all {addr}/24 scram-sha-256\n")
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        proc = _spawn_postgres(base, bindir, port, addresses, creds)
        cluster = PostgresCluster(port, user, password, base, proc, addresses,
                                  bindir=bindir, run_as=creds)
        try:
            if _wait_postgres(cluster, started):
                return cluster
        except BaseException:
            cluster.stop()
            raise
        last_error = _tail(os.path.join(base, "postgres.log"))
        _stop_process(cluster.process, 10)
    shutil.rmtree(base, ignore_errors=True)
    raise ServiceFailed(f"PostgreSQL did not start:\n{last_error}")


def _spawn_postgres(base: str, bindir: str, port: int, bind: Sequence[str],
                    run_as: dict[str, Any]) -> subprocess.Popen[bytes]:
    log = os.path.join(base, "postgres.log")
    with open(log, "ab") as out:
        if run_as:
            os.chown(log, run_as["user"], run_as["group"])
        return subprocess.Popen(
            [os.path.join(bindir, "postgres"), "-D", os.path.join(base, "data"),
             "-p", str(port),
             "-c", f"listen_addresses={','.join(bind)}",
             "-c", f"unix_socket_directories={base}",
             "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base,
            start_new_session=True, **run_as)


def _wait_postgres(cluster: PostgresCluster, started: float) -> bool:
    """True once the server accepts connections; False if it exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT
    socket_path = os.path.join(cluster.base_dir, f".s.PGSQL.{cluster.port}")
    while cluster.process.poll() is None and time.monotonic() < deadline:
        if os.path.exists(socket_path) and _port_open("127.0.0.1", cluster.port) \
                and _pg_ready(cluster):
            cluster.startup_seconds = time.monotonic() - started
            return True
        time.sleep(0.05)
    return False


def _pg_ready(cluster: PostgresCluster) -> bool:
    import sqlalchemy

    engine = sqlalchemy.create_engine(cluster.url(), poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        return True
    except sqlalchemy.exc.OperationalError:
        return False
    finally:
        engine.dispose()


# -- pytest plugin -------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the module is usable without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _started(starter: Any) -> Any:
        # own directories under the temp dir (not pytest's 0700 one: PostgreSQL runs as
        # the 'postgres' user when the tests run as root); stop() removes them
        try:
            return starter()
        except ServiceUnavailable as exc:
            pytest.skip(str(exc))

    @pytest.fixture(scope="session")
    def rabbit() -> Iterator[RabbitNode]:
        """A private RabbitMQ node for the whole session (see the module docstring)."""
        node: RabbitNode = _started(start_rabbitmq)
        try:
            yield node
        finally:
            node.stop()

    @pytest.fixture
    def rabbit_url(rabbit: RabbitNode) -> str:
        """A transport URL on a virtual host of this test's own."""
        return rabbit.url(rabbit.new_vhost())

    @pytest.fixture(scope="session")
    def postgres() -> Iterator[PostgresCluster]:
        """A private PostgreSQL cluster for the whole session."""
        cluster: PostgresCluster = _started(start_postgres)
        try:
            yield cluster
        finally:
            cluster.stop()

    @pytest.fixture
    def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
        """An empty database of this test's own, dropped afterwards."""
        url = postgres.create_database()
        yield url
        postgres.drop_database(url.rsplit("/", 1)[1])
