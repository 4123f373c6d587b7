"""Live migration between two lab hosts: the libvirt driver against plain
``virsh migrate --live --p2p`` on the same guest, in the same run.

Run with ``./dev.sh bench -k live_migration -s`` (root: it starts its own two-host lab).

For every guest memory size (``SIZES``: 128, 256, 512 MiB) and dirtying rate
(``DIRTY``: 0 and ~4 MiB/s of non-zero data rewritten by the guest), one guest is
booted on host A, then moved back and forth ``ROUNDS`` times (3; env
``VIRTSDK_BENCH_ROUNDS``): the driver's ``live_migration`` A->B (checks,
``pre_live_migration``, ``live_migration``, post steps), then ``virsh migrate --live
--p2p --persistent --undefinesource`` B->A with the same destination XML the driver
would use (without it the guest cannot start on the other host: its VNC listens on its
host's own address) and the same data URI.  Bandwidth is unlimited.

Measured per migration: wall time of the migration call itself (``live_migration``
including its monitor, or the ``virsh`` process) and the downtime libvirt reports in
the completed job statistics.  The table (medians) is printed at the end and written
to ``/tmp/virtsdk-bench-live-migration.md``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.live_migration.source import destination_spec
from virtsdk_libvirt.live_migration.xml_rewrite import rewrite_for_destination

from benchmarks.lab_migration import (
    CTX,
    NET,
    finish,
    lab_drivers,
    lab_guest_image,
    prepare,
    two_host_lab,
)
from virtsdk.objects import Flavor, ImageMeta, Instance, JobStats

ROUNDS = int(os.environ.get("VIRTSDK_BENCH_ROUNDS", "3"))
SIZES = [128, 256, 512]
DIRTY = [0, 4096]  # kbit/s asked of the guest's dirtier (KiB/s of non-zero data)
REPORT = "/tmp/virtsdk-bench-live-migration.md"

#: (size, dirty, tool) -> list of (seconds, downtime ms)
RESULTS: dict[tuple[int, int, str], list[tuple[float, int]]] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    yield from two_host_lab("lmig")


@pytest.fixture(scope="module")
def guest_image() -> Any:
    return lab_guest_image()


@pytest.fixture(scope="module")
def drivers(lab: Any) -> Iterator[tuple[Any, Any]]:
    yield from lab_drivers(lab)


def via_driver(src: Any, dst: Any, inst: Instance) -> tuple[float, int]:
    """The driver's live_migration; (seconds of the call, downtime ms)."""
    data = prepare(src, dst, inst)
    samples: list[JobStats] = []
    done: list[str] = []
    start = time.perf_counter()
    src.live_migration(CTX, inst, dst.host, lambda *a: done.append("post"),
                       lambda *a: done.append("recover"), migrate_data=data,
                       progress=samples.append)
    took = time.perf_counter() - start
    assert done == ["post"], done
    finish(src, dst, inst, data)
    return took, samples[-1].downtime_ms


def via_virsh(src: Any, dst: Any, inst: Instance, dst_host: Any) -> tuple[float, int]:
    """``virsh migrate --live --p2p`` with the same destination XML and data URI."""
    data = prepare(src, dst, inst)
    dom = src._lookup(inst)  # noqa: SLF001
    xml = xmlutil.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE
                                    | libvirt.VIR_DOMAIN_XML_SECURE))
    spec = destination_spec(data, str(src._paths.instance_dir(inst)),  # noqa: SLF001
                            str(src._paths.image_cache))  # noqa: SLF001
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xmlutil.to_string(rewrite_for_destination(xml, spec)))
        f.flush()
        cmd = ["virsh", "-c", src._host.uri, "migrate", "--live", "--p2p",  # noqa: SLF001
               "--persistent", "--undefinesource", "--xml", f.name,
               "--migrateuri", f"tcp://{dst_host.address}", inst.name, dst_host.libvirt_uri]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        took = time.perf_counter() - start
    info = subprocess.run(["virsh", "-c", dst_host.libvirt_uri, "domjobinfo", "--completed",
                           inst.name], check=True, capture_output=True, text=True).stdout
    m = re.search(r"Total downtime:\s+(\d+)", info)
    finish(src, dst, inst, data)
    return took, int(m.group(1)) if m else 0


@pytest.mark.parametrize("dirty", DIRTY)
@pytest.mark.parametrize("size", SIZES)
def test_live_migration_time_and_downtime(lab, drivers, guest_image, size, dirty):
    a, b = drivers
    kw = {"dirty_kbps": dirty, "dirty_mib": 16} if dirty else {}
    image = ImageMeta(id=f"bench-{size}-{dirty}", properties={
        "kernel": str(guest_image.kernel), "initrd": str(guest_image.initrd),
        "cmdline": guest_image.cmdline(**kw)})
    inst = Instance(name=f"bench-{size}-{dirty}", flavor=Flavor(f"b{size}", size, 1, 0),
                    image=image)
    a.spawn(CTX, inst, image, NET)
    try:
        from virtsdk_lab.guest import ConsoleLog

        log = ConsoleLog(a._paths.console_log(inst))  # noqa: SLF001
        log.wait_for("READY", 180)
        time.sleep(2)  # let the dirtier settle
        for _ in range(ROUNDS):
            RESULTS.setdefault((size, dirty, "virtsdk"), []).append(via_driver(a, b, inst))
            RESULTS.setdefault((size, dirty, "virsh"), []).append(
                via_virsh(b, a, inst, lab.hosts[0]))
        assert a._find(inst) is not None  # noqa: SLF001 - back home after every round
    finally:
        for d in (a, b):
            d.destroy(CTX, inst, NET)


def teardown_module() -> None:
    if not RESULTS:
        return
    lines = [
        f"Live migration, 2 lab hosts, QEMU TCG, unlimited bandwidth, medians of {ROUNDS}",
        "",
        "| guest RAM | dirtying | tool | total time (s) | downtime (ms) |",
        "|---|---|---|---|---|",
    ]
    for (size, dirty, tool), runs in sorted(RESULTS.items()):
        secs = statistics.median(r[0] for r in runs)
        down = statistics.median(r[1] for r in runs)
        rate = f"{dirty // 1024} MiB/s" if dirty else "0"
        lines.append(f"| {size} MiB | {rate} | {tool} | {secs:.2f} | {down:.0f} |")
    text = "\n".join(lines) + "\n"
    with open(REPORT, "w") as f:
        f.write(text)
    print("\n" + text)
