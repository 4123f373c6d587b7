"""The session ``lab`` fixture tears its lab down after failing tests and on SIGTERM.

Runs a small pytest session in a subprocess (its own rootdir and conftest loading
``virtsdk_lab.fixtures``), lets one of its tests fail, interrupts it with SIGTERM
while a second test is blocked, and checks the lab it had started is gone.
"""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from virtsdk_lab import allocation, state
from virtsdk_lab.network import link_exists, netns_exists
from virtsdk_lab.processes import alive

pytestmark = pytest.mark.lab

INNER_TESTS = textwrap.dedent("""
    import json, sys, time

    def test_fails(lab):
        assert False, "deliberate failure"

    def test_blocks(lab):
        pids = [h.libvirtd_pid() for h in lab.hosts] + [h.virtlogd_pid() for h in lab.hosts]
        print("LABINFO " + json.dumps({"index": lab.index, "pids": pids,
                          "netns": [h.netns for h in lab.hosts],
                          "lab_dir": str(lab.lab_dir)}), file=sys.__stdout__,
              flush=True)
        time.sleep(120)  # SIGTERM arrives long before this ends
""")


@pytest.mark.timeout(180)
def test_sigterm_after_a_failed_test_still_tears_the_lab_down(tmp_path, lab):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("virtsdk_lab.fixtures",)\n')
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        info = None
        for line in inner.stdout:
            if "LABINFO " in line:  # pytest -q may have printed "F" on the same line
                info = json.loads(line.split("LABINFO ", 1)[1])
                break
        assert info is not None, "inner session never reached its blocking test"
        assert info["index"] != lab.index
        assert all(alive(pid) for pid in info["pids"])
        inner.send_signal(signal.SIGTERM)
        rest = inner.stdout.read()
        assert inner.wait(timeout=60) != 0
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()
    assert "deliberate failure" in rest or "1 failed" in rest
    assert [pid for pid in info["pids"] if alive(pid)] == []
    assert not any(netns_exists(ns) for ns in info["netns"])
    assert not link_exists(f"vsdk{info['index']}br")
    assert state.load(allocation.RUN_DIR, info["index"]) is None
    assert not Path(info["lab_dir"]).exists()
