"""The test guest on the real lab: boot, heartbeat, disk marker, memory checksum,
dirtying, ACPI shutdown, and ``virsh migrate --live --p2p`` between the two hosts.

One guest is booted on host A and shared by the tests of this module in order
(boot -> migrate to B); two more boots check the marker on a qcow2 overlay and the
kernel-command-line options.  Every domain is destroyed and every file removed at
the end of the module.
"""

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from virtsdk_lab.guest import ConsoleLog, demo_domain_xml

pytestmark = pytest.mark.lab

BOOT_TIMEOUT_S = 120
NAME = "labguest"


@dataclass
class Guest:
    name: str
    disk: Path
    console: ConsoleLog
    boot_id: str


def _domain(uri, name):
    conn = libvirt.open(uri)
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def _destroy_everywhere(lab, name):
    for host in lab.hosts:
        conn = libvirt.open(host.libvirt_uri)
        try:
            dom = conn.lookupByName(name)
            dom.destroy()
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()


def _boot(host, xml, console):
    conn = libvirt.open(host.libvirt_uri)
    try:
        conn.createXML(xml, 0)
    finally:
        conn.close()
    return console.wait_for_heartbeat(BOOT_TIMEOUT_S)


@pytest.fixture(scope="module")
def guest(lab, guest_image):
    """A guest with a 64 MiB raw disk, running on host A (its files in A's
    instances path, which host B sees at the same path)."""
    a = lab.hosts[0]
    disk = a.instances_path / f"{NAME}.raw"
    log_path = a.instances_path / f"{NAME}.console.log"
    subprocess.run(["qemu-img", "create", "-f", "raw", str(disk), "64M"], check=True,
                   capture_output=True)
    console = ConsoleLog(log_path)
    names = [NAME, f"{NAME}-qcow2", f"{NAME}-opts"]
    try:
        beat = _boot(a, demo_domain_xml(NAME, guest_image, log_path, disk=disk), console)
        yield Guest(NAME, disk, console, beat.boot_id)
    finally:
        for name in names:
            _destroy_everywhere(lab, name)
        for host in lab.hosts:
            for path in host.instances_path.glob(f"{NAME}*"):
                path.unlink()


def test_guest_boots_heartbeats_and_writes_a_new_marker(guest):
    first = guest.console.last_heartbeat()
    later = guest.console.wait_for_heartbeat(30, boot_id=guest.boot_id,
                                             after_seq=first.seq + 2)
    assert later.seq > first.seq
    assert guest.console.boot_ids() == [guest.boot_id]
    assert [m.how for m in guest.console.markers()] == ["new"]
    head = guest.disk.read_bytes()[:512]
    assert head.startswith(f"VSDKMARK {guest.console.marker()}\n".encode())


def test_memory_checksum_is_reported_and_stable(guest):
    guest.console.wait_for(r"MEMCHECK \w+ 2$", 30)
    sums = {m.sha256 for m in guest.console.memchecks()}
    assert len(sums) == 1


def test_virsh_live_p2p_migration_moves_the_running_guest(lab, guest):
    a, b = lab.hosts
    before = guest.console.last_heartbeat()
    memsum = guest.console.memchecks()[-1].sha256
    run = subprocess.run(
        ["virsh", "-c", a.libvirt_uri, "migrate", "--live", "--p2p", "--unsafe",
         guest.name, b.libvirt_uri],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert _domain(a.libvirt_uri, guest.name) is None
    conn = libvirt.open(b.libvirt_uri)
    try:
        dom = conn.lookupByName(guest.name)
        assert dom.isActive()
        stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    finally:
        conn.close()
    assert stats["memory_remaining"] == 0
    assert stats["memory_processed"] > 0
    assert "downtime" in stats
    after = guest.console.wait_for_heartbeat(60, boot_id=guest.boot_id,
                                             after_seq=before.seq + 4)
    assert after.boot_id == before.boot_id  # the same boot: no restart
    start = guest.console.memchecks()[-1].seq
    guest.console.wait_for(rf"MEMCHECK \w+ {start + 1}$", 30)
    assert {m.sha256 for m in guest.console.memchecks()} == {memsum}


def test_disk_marker_survives_and_reads_through_a_qcow2_overlay(lab, guest_image, guest):
    b = lab.hosts[1]
    token = guest.console.marker()
    _destroy_everywhere(lab, guest.name)
    overlay = b.instances_path / f"{NAME}.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", str(guest.disk),
                    str(overlay)], check=True, capture_output=True)
    console = ConsoleLog(b.instances_path / f"{NAME}.qcow2.console.log")
    xml = demo_domain_xml(f"{NAME}-qcow2", guest_image, console.path, disk=overlay,
                          disk_format="qcow2")
    beat = _boot(b, xml, console)
    assert beat.boot_id != guest.boot_id
    assert console.markers()[-1].token == token
    assert console.markers()[-1].how == "found"

    _press_power_button(b.libvirt_uri, f"{NAME}-qcow2", console)
    deadline = time.monotonic() + 30
    while _domain(b.libvirt_uri, f"{NAME}-qcow2") is not None:
        assert time.monotonic() < deadline, "guest did not power off after SHUTDOWN"
        time.sleep(0.1)


def test_kernel_command_line_sets_marker_and_dirties_memory(lab, guest_image, guest):
    a = lab.hosts[0]
    disk = a.instances_path / f"{NAME}-opts.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "16M"], check=True,
                   capture_output=True)
    console = ConsoleLog(a.instances_path / f"{NAME}-opts.console.log")
    cmdline = guest_image.cmdline(dirty_kbps=16384, dirty_mib=32, marker="set-by-test")
    xml = demo_domain_xml(f"{NAME}-opts", guest_image, console.path, disk=disk,
                          disk_format="qcow2", cmdline=cmdline)
    _boot(a, xml, console)
    assert console.markers()[-1].token == "set-by-test"
    assert console.markers()[-1].how == "set"
    assert console.dirty_kbps() == 16384
    console.wait_for(r"DIRTYSTAT \d+ \d+$", 30)
    assert console.dirty_achieved_kbps() >= 16384 / 2
    # QEMU's own estimate (page sampling, the only mode that works under TCG here):
    # the 32 MiB ring (1/8 of RAM) gets new content within the 2 s window, so some of
    # the ~128 sampled pages are certain to be found changed
    assert _dirty_rate_mbps(a.libvirt_uri, f"{NAME}-opts") > 0


def _press_power_button(uri, name, console):
    """ACPI shutdown, re-pressed every few seconds like a driver's power_off retry loop
    (a press that lands while the guest is busy can be lost)."""
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(name)
        for _attempt in range(6):
            dom.shutdown()
            try:
                console.wait_for("SHUTDOWN", 5)
                return
            except TimeoutError:
                continue
        console.wait_for("SHUTDOWN", 0)
    finally:
        conn.close()


def _dirty_rate_mbps(uri, name):
    """QEMU's sampled dirty-page rate of domain ``name`` (MiB/s)."""
    conn = libvirt.open(uri)
    try:
        dom = conn.lookupByName(name)
        dom.startDirtyRateCalc(2, 0)
        deadline = time.monotonic() + 30
        while True:
            stats = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_DIRTYRATE)[0][1]
            if stats.get("dirtyrate.calc_status") == libvirt.VIR_DOMAIN_DIRTYRATE_MEASURED:
                return stats["dirtyrate.megabytes_per_second"]
            assert time.monotonic() < deadline, f"dirty rate not measured: {stats}"
            time.sleep(0.2)
    finally:
        conn.close()
