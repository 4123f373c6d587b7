"""Bringing labs up and down: side by side, after a crash, after a failed up(), by CLI.

These tests start their own small labs next to the session lab; each lab up/down
costs well under a second.
"""

import subprocess
import sys
import textwrap

import libvirt
import pytest
from virtsdk_lab import Lab, LabError, PrerequisitesMissing, allocation, daemons, prereqs, state
from virtsdk_lab.guest import demo_domain_xml
from virtsdk_lab.lab import clean_index, recorded_labs
from virtsdk_lab.network import link_exists, netns_exists, netns_pids
from virtsdk_lab.processes import alive

from virtsdk.cli.main import main as virtsdk_main

pytestmark = pytest.mark.lab


def _assert_gone(index, hosts, lab_dir, pids):
    for host in hosts:
        assert not netns_exists(host.netns)
        assert not link_exists(f"vsdk{index}{host.netns[-1]}")
    assert not link_exists(f"vsdk{index}br")
    assert not lab_dir.exists()
    assert state.load(allocation.RUN_DIR, index) is None
    assert [pid for pid in pids if alive(pid)] == []


def test_second_lab_runs_beside_the_session_lab_and_down_removes_everything(
    lab, guest_image
):
    other = Lab(name="side", hosts=1).up()
    try:
        assert other.index != lab.index
        host = other.hosts[0]
        assert host.address.rsplit(".", 2)[0] == lab.hosts[0].address.rsplit(".", 2)[0]
        assert host.address.split(".")[2] != lab.hosts[0].address.split(".")[2]
        assert host.netns not in {h.netns for h in lab.hosts}
        conn = libvirt.open(host.libvirt_uri)
        try:
            conn.createXML(demo_domain_xml("side-guest", guest_image,
                                           host.instances_path / "side.log"), 0)
        finally:
            conn.close()
        sleeper = subprocess.Popen([*host.exec_prefix, "sleep", "600"])
        pids = netns_pids(host.netns)
        commands = {open(f"/proc/{p}/cmdline").read().split("\0")[0] for p in pids}
        assert {"libvirtd", "virtlogd", "/usr/bin/qemu-system-x86_64", "sleep"} <= commands
        index, hosts, lab_dir = other.index, list(other.hosts), other.lab_dir
    finally:
        other.down()
    sleeper.wait(timeout=10)
    _assert_gone(index, hosts, lab_dir, pids)
    assert other.leftovers() == []
    other.down()  # idempotent
    assert all(s.healthy for s in lab.status())


def test_stale_lab_of_a_killed_process_is_cleaned(lab):
    script = textwrap.dedent("""
        import os
        from virtsdk_lab import Lab
        lab = Lab(name="stale", hosts=1).up()
        print(lab.index, flush=True)
        os._exit(0)  # like SIGKILL: no down(), the index lock dies with the process
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    index = int(run.stdout.split()[-1])
    record = state.load(allocation.RUN_DIR, index)
    assert record is not None and record.name == "stale"
    assert (record, False) in [(r, busy) for r, busy in recorded_labs() if r.index == index]
    pids = [p for h in record.hosts for p in netns_pids(h.netns)]
    assert pids, "the stale lab's daemons should still be running"

    lock = allocation.try_lock(index)
    assert lock is not None
    try:
        assert clean_index(index) is True
        assert clean_index(index) is False
    finally:
        lock.release()
    _assert_gone(index, record.hosts, record.lab_dir, pids)


def test_failed_up_removes_what_it_had_created(lab, monkeypatch):
    started = []
    real_start = daemons.start_daemons

    def start_then_fail_on_second(host):
        started.append(host)
        if len(started) == 2:
            raise LabError("injected: second host's libvirtd did not start")
        real_start(host)

    monkeypatch.setattr(daemons, "start_daemons", start_then_fail_on_second)
    broken = Lab(name="broken", hosts=2)
    with pytest.raises(LabError, match="injected"):
        broken.up()
    index = int(started[0].netns.split("-")[0].removeprefix("vsdk"))
    first_pids = [started[0].libvirtd_pid(), started[0].virtlogd_pid()]
    assert broken.index is None and broken.hosts == []
    _assert_gone(index, started, started[0].host_dir.parent, [p for p in first_pids if p])


def test_persistent_lab_via_cli_up_status_down(lab, capsys):
    assert virtsdk_main(["lab", "up", "--name", "clitest", "--hosts", "1"]) == 0
    out = capsys.readouterr().out
    assert "clitest-a" in out and "qemu+tcp://198.18." in out
    record = next(r for r, _busy in recorded_labs() if r.name == "clitest")
    assert record.persistent
    assert record.hosts[0].libvirtd_pid() is not None

    attached = Lab.attach(record.index)
    assert [h.name for h in attached.hosts] == ["clitest-a"]
    assert attached.status()[0].healthy
    attached.detach()  # leave it running for the CLI to take down

    assert virtsdk_main(["lab", "status"]) == 0
    out = capsys.readouterr().out
    assert f"clitest-{record.index} (persistent)" in out
    assert f"vsdk-{lab.index} (in use by pid" in out

    assert virtsdk_main(["lab", "down", "--name", "clitest"]) == 0
    assert f"lab {record.index}: down" in capsys.readouterr().out
    _assert_gone(record.index, record.hosts, record.lab_dir, [])
    assert all(s.healthy for s in lab.status())


def test_cli_down_leaves_a_lab_in_use_alone(lab, capsys):
    assert virtsdk_main(["lab", "down", "--index", str(lab.index)]) == 1
    assert "in use by a running process" in capsys.readouterr().out
    with pytest.raises(LabError, match="in use by process"):
        Lab.attach(lab.index)
    assert all(s.healthy for s in lab.status())


def test_prerequisites_are_met_here_and_missing_ones_are_named(monkeypatch):
    assert prereqs.check_prerequisites() == []
    monkeypatch.setattr(prereqs.shutil, "which",
                        lambda b: None if b == "qemu-img" else "/usr/bin/" + b)
    monkeypatch.setattr(prereqs, "_in_sbin", lambda b: False)
    missing = prereqs.check_prerequisites()
    assert missing == ["binary 'qemu-img' (Debian package qemu-utils)"]
    error = PrerequisitesMissing(missing)
    assert "missing:\n  - binary 'qemu-img' (Debian package qemu-utils)" in str(error)
    with pytest.raises(PrerequisitesMissing, match="qemu-img"):
        Lab(name="nope", hosts=1).up()


def test_libvirtd_that_never_listens_is_reported_with_its_log(lab, monkeypatch):
    real_script = daemons.launch_script

    def script_without_libvirtd(host):
        lines = real_script(host).splitlines()
        kept = [line for line in lines if "libvirtd -d" not in line]
        kept.append(f"echo 'pretend libvirtd failed to start' >> {host.host_dir}/daemons.out")
        return "\n".join(kept) + "\n"

    monkeypatch.setattr(daemons, "launch_script", script_without_libvirtd)
    monkeypatch.setattr(daemons, "READY_TIMEOUT_S", 1.0)
    silent = Lab(name="silent", hosts=1)
    with pytest.raises(LabError) as failure:
        silent.up()
    message = str(failure.value)
    assert "did not listen on 198.18." in message
    assert "pretend libvirtd failed to start" in message
    assert silent.index is None
