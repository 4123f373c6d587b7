"""A configured broker nobody listens on (a closed free port): ``virtsdk demo`` and the
operator CLI's commands that send RPC fail within ``[DEFAULT] rpc_connect_timeout``
with one line naming the broker's host (never its password), exit 1; commands that
only read records still work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from virtsdk.db import migration

BIN = Path(sys.executable).parent
SECRET = "s3cret-pw"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unreachable_conf(tmp_path: Path) -> tuple[Path, int]:
    port = _closed_port()
    url = f"sqlite:///{tmp_path / 'v.sqlite'}"
    conf = tmp_path / "virtsdk.conf"
    conf.write_text(
        "[DEFAULT]\n"
        f"transport_url = rabbit://guest:{SECRET}@127.0.0.1:{port}/\n"
        "rpc_connect_timeout = 2\n"
        f"state_path = {tmp_path}\n"
        f"[database]\nconnection = {url}\n")
    migration.db_sync(url)
    return conf, port


def _virtsdk(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the bound under test is rpc_connect_timeout; the subprocess timeout only keeps a
    # regression (waiting forever) from hanging the suite
    return subprocess.run([str(BIN / "virtsdk"), "--config-file", str(conf), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def _one_line_naming_the_host(proc: subprocess.CompletedProcess[str], port: int) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines()
             if not line.startswith("Connection failed")]  # kombu's own retry log
    assert lines == [
        f"error: message broker rabbit://127.0.0.1:{port} unreachable for 2 s "
        "([Errno 111] Connection refused); check [DEFAULT] transport_url"], proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_demo_fails_in_bounded_time_naming_the_broker(
        unreachable_conf: tuple[Path, int]) -> None:
    conf, port = unreachable_conf
    _one_line_naming_the_host(_virtsdk(conf, "demo"), port)


def test_operator_cli_fails_in_bounded_time_naming_the_broker(
        unreachable_conf: tuple[Path, int]) -> None:
    conf, port = unreachable_conf
    assert _virtsdk(conf, "flavor", "create", "small", "--ram", "256", "--vcpus", "1",
                    "--disk", "1").returncode == 0  # records only: no broker needed
    _one_line_naming_the_host(_virtsdk(conf, "server", "create", "vm", "--flavor",
                                       "small"), port)
    listed = _virtsdk(conf, "server", "list")
    assert listed.returncode == 0, listed.stderr
