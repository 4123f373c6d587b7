"""A throw-away sshd for the rsync/scp tests and benchmarks.

Generates a host key and a client key in a temporary directory, runs
``/usr/sbin/sshd -D`` (optionally with a host's ``exec_prefix``, so it listens in a
lab host's network namespace) accepting only that client key for root, and stops it
on exit.  Nothing outside the temporary directory is touched except ``/run/sshd``
(sshd's privilege-separation directory, created if missing).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Sshd:
    address: str
    port: int
    client_key: str
    directory: str


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@contextmanager
def running_sshd(address: str = "127.0.0.1", exec_prefix: list[str] | None = None,
                 port: int | None = None) -> Iterator[Sshd]:
    d = tempfile.mkdtemp(prefix="vsdk-sshd-")
    proc = None
    try:
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            os.path.join(d, name)], check=True)
        shutil.copy(os.path.join(d, "client_key.pub"), os.path.join(d, "authorized_keys"))
        port = port or (_free_port(address) if not exec_prefix else 2222)
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as fh:
            fh.write(f"Port {port}\nListenAddress {address}\n"
                     f"HostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
                     f"AuthorizedKeysFile {d}/authorized_keys\n"
                     "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                     "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                     "Subsystem sftp internal-sftp\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        proc = subprocess.Popen([*(exec_prefix or []), "/usr/sbin/sshd", "-D", "-e", "-f",
                                 config], stderr=open(os.path.join(d, "sshd.log"), "wb"))
        deadline = time.monotonic() + 10
        while True:
            probe = subprocess.run([*(exec_prefix or []), "nc", "-z", address, str(port)],
                                   capture_output=True)
            if probe.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = open(os.path.join(d, "sshd.log")).read()
                raise RuntimeError(f"sshd did not start: {log}")
            time.sleep(0.05)
        yield Sshd(address, port, os.path.join(d, "client_key"), d)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(d, ignore_errors=True)
