"""A private RabbitMQ node: its own node name, free ports and temporary mnesia/log
directories, listening on 127.0.0.1 (and, for a lab deployment, on the lab bridge).

Used by the services tests (one node per test run) and ``virtsdk lab up --services``;
:meth:`PrivateRabbit.stop` stops the node and removes its files.  Never the machine's
default node or port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

#: the scripts themselves (the /usr/sbin wrappers switch to the rabbitmq user, who
#: cannot write our temporary directory and has another Erlang cookie)
SBIN = "/usr/lib/rabbitmq/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRabbit:
    def __init__(self, extra_address: str | None = None) -> None:
        """Listens on 127.0.0.1 and, if given, ``extra_address`` (a lab bridge)."""
        self.dir = tempfile.mkdtemp(prefix="vsdk-rabbit-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as fh:
            fh.write(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
            if extra_address:
                fh.write(f"listeners.tcp.2 = {extra_address}:{self.port}\n")
                fh.write("loopback_users = none\n")
        self.node = f"vsdk{uuid.uuid4().hex[:8]}@localhost"
        plugins = os.path.join(self.dir, "enabled_plugins")
        with open(plugins, "w") as fh:
            fh.write("[].\n")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.dir, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def url_at(self, address: str = "127.0.0.1") -> str:
        return f"rabbit://guest:guest@{address}:{self.port}/"

    @property
    def url(self) -> str:
        return self.url_at()

    def start(self, timeout: float = 90.0) -> PrivateRabbit:
        self.proc = subprocess.Popen(
            [f"{SBIN}/rabbitmq-server"], env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}; "
                                   f"logs in {self.env['RABBITMQ_LOG_BASE']}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
            except OSError:
                time.sleep(0.3)
                continue
            subprocess.run([f"{SBIN}/rabbitmqctl", "-n", self.node, "await_startup"],
                           env=self.env, check=True, capture_output=True, timeout=60)
            return self
        raise RuntimeError("private RabbitMQ did not listen")

    def halt(self) -> None:
        """Stop the node (connections drop, the port closes); its data stays for
        :meth:`start` to bring the same broker back."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run([f"{SBIN}/rabbitmqctl", "-n", self.node, "stop"], env=self.env,
                           capture_output=True, timeout=60, check=False)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run([f"{SBIN}/rabbitmqctl", "-n", self.node, "stop"], env=self.env,
                           capture_output=True, timeout=60, check=False)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
