"""``virtsdk drivers list`` / ``show`` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VIRTSDK = str(Path(sys.executable).with_name("virtsdk"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VIRTSDK, *args], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_drivers_list_shows_fake_and_libvirt():
    out = run("drivers", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    fake = next(line for line in lines if "│ fake " in line)
    libvirt = next(line for line in lines if "│ libvirt " in line)
    assert "virtsdk-fake" in fake and "available" in fake
    assert "virtsdk-libvirt" in libvirt and "available" in libvirt


def test_drivers_show_prints_capabilities_and_options():
    out = run("drivers", "show", "fake")
    assert out.returncode == 0, out.stderr
    assert "supports_live_migration" in out.stdout
    assert "options (group [fake])" in out.stdout


def test_drivers_show_unknown_is_a_clear_error():
    out = run("drivers", "show", "nope")
    assert out.returncode == 1
    assert "no compute driver named 'nope' is installed" in out.stderr
    assert "Traceback" not in out.stderr


def test_sample_config_includes_driver_groups():
    gen = str(Path(sys.executable).with_name("oslo-config-generator"))
    out = subprocess.run([gen, "--namespace", "virtsdk"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[DEFAULT]" in out.stdout and "compute_driver" in out.stdout
    assert "[fake]" in out.stdout and "[libvirt]" in out.stdout
    assert "[disk_transfer]" in out.stdout and "[transport_stream]" in out.stdout
    assert "[live_migration]" in out.stdout


def test_a_remote_error_prints_its_request_id_not_a_traceback(monkeypatch, capsys):
    """An operator greps the serving service's log for the id the CLI prints."""
    import argparse

    from virtsdk.cli import main as cli_main
    from virtsdk.exceptions import NoValidHost

    def fail(_args: argparse.Namespace) -> int:
        raise NoValidHost(_remote={"args": ["no host has 1 TiB free"],
                                   "request_id": "req-1234"})

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=fail)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    assert cli_main.main([]) == 1
    err = capsys.readouterr().err
    assert err == "error: no host has 1 TiB free (request req-1234)\n"
