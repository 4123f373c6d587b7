"""Live migration between two lab hosts: the qemu driver (QEMU over QMP, contrib/qemu)
against the libvirt driver, on the same test guest, in the same run.

Run with ``.venv/bin/python -m pytest benchmarks/bench_qemu_vs_libvirt.py -s`` (root: it
starts its own two-host lab).  Both drivers run the guest under TCG with the same
kernel, initramfs, command line and memory; bandwidth is unlimited and the
convergence policies are the defaults.

For every guest memory size (``VIRTSDK_BENCH_SIZES``, default ``128,256`` MiB) and
dirtying rate (``DIRTY``: 0 and ~4 MiB/s of non-zero data rewritten by the guest), each
driver boots one guest on host A and moves it A->B->A ``ROUNDS`` times
(``VIRTSDK_BENCH_ROUNDS``, default 3), the two drivers' rounds interleaved.  Measured per
migration: wall time of the whole manager sequence (checks, ``pre_live_migration``,
``live_migration`` with its monitor, post steps) and the downtime the hypervisor
reports for the completed job.  The table (medians, and qemu / libvirt ratios) is
printed at the end and written to ``/tmp/virtsdk-bench-qemu-vs-libvirt.md``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.lab_migration import lab_guest_image, two_host_lab
from contrib.qemu.tests.qemu_lab import clean_qemu_dir, make_qemu_driver
from drivers.libvirt.tests.libvirt_lab import clean_lab_host, make_driver
from virtsdk.context import get_admin_context
from virtsdk.objects import Flavor, ImageMeta, Instance, NetworkInfo
from virtsdk.testing import sequences

ROUNDS = int(os.environ.get("VIRTSDK_BENCH_ROUNDS", "3"))
SIZES = [int(s) for s in os.environ.get("VIRTSDK_BENCH_SIZES", "128,256").split(",")]
DIRTY = [0, 4096]
REPORT = "/tmp/virtsdk-bench-qemu-vs-libvirt.md"
NET = NetworkInfo()
CTX = get_admin_context()

#: (size, dirty, driver) -> list of (seconds, downtime ms)
RESULTS: dict[tuple[int, int, str], list[tuple[float, int]]] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    yield from two_host_lab("qvl")


@pytest.fixture(scope="module")
def guest_image() -> Any:
    return lab_guest_image()


@pytest.fixture(scope="module")
def drivers(lab: Any) -> Iterator[dict[str, tuple[Any, Any]]]:
    pairs = {"libvirt": tuple(make_driver(h) for h in lab.hosts[:2]),
             "qemu": tuple(make_qemu_driver(h) for h in lab.hosts[:2])}
    yield pairs  # type: ignore[misc]
    for d in pairs["libvirt"]:
        d.cleanup_host(d.host)
    for h in lab.hosts:
        clean_lab_host(h)
    for d in pairs["qemu"]:
        clean_qemu_dir(d.paths.root)


def migrate(src: Any, dst: Any, inst: Instance) -> tuple[float, int]:
    """The compute manager's sequence; (seconds, downtime ms)."""
    start = time.perf_counter()
    out = sequences.live_migrate(src, dst, CTX, inst, network_info=NET)
    took = time.perf_counter() - start
    assert out.calls == ["post"] and out.error is None, out
    return took, out.final.downtime_ms


def console_path(name: str, drv: Any, inst: Instance) -> Path:
    if name == "qemu":
        return Path(drv.paths.instance_dir(inst)) / "console.log"
    return Path(drv._paths.console_log(inst))  # noqa: SLF001


@pytest.mark.parametrize("dirty", DIRTY)
@pytest.mark.parametrize("size", SIZES)
def test_qemu_and_libvirt_live_migration(lab, drivers, guest_image, size, dirty):
    from virtsdk_lab.guest import ConsoleLog

    kw = {"dirty_kbps": dirty, "dirty_mib": 16} if dirty else {}
    image = ImageMeta(id=f"qvl-{size}-{dirty}", properties={
        "kernel": str(guest_image.kernel), "initrd": str(guest_image.initrd),
        "cmdline": guest_image.cmdline(**kw)})
    guests = {}
    for name, (a, _b) in drivers.items():
        inst = Instance(name=f"qvl-{name}-{size}-{dirty}",
                        flavor=Flavor(f"q{size}", size, 1, 0), image=image)
        a.spawn(CTX, inst, image, NET)
        guests[name] = inst
    try:
        for name, (a, _b) in drivers.items():
            ConsoleLog(console_path(name, a, guests[name])).wait_for("READY", 240)
        time.sleep(2)  # let the dirtiers settle
        for _ in range(ROUNDS):
            for name, (a, b) in drivers.items():
                runs = RESULTS.setdefault((size, dirty, name), [])
                runs.append(migrate(a, b, guests[name]))
                runs.append(migrate(b, a, guests[name]))
    finally:
        for name, pair in drivers.items():
            for d in pair:
                d.destroy(CTX, guests[name], NET)


def teardown_module() -> None:
    if not RESULTS:
        return
    lines = [
        f"Live migration, 2 lab hosts, QEMU TCG, unlimited bandwidth, medians of "
        f"{2 * ROUNDS} migrations per driver (A->B and B->A)",
        "",
        "| guest RAM | dirtying | driver | total time (s) | downtime (ms) |",
        "|---|---|---|---|---|",
    ]
    ratios = []
    for size in SIZES:
        for dirty in DIRTY:
            med = {}
            for name in ("qemu", "libvirt"):
                runs = RESULTS.get((size, dirty, name))
                if not runs:
                    continue
                med[name] = (statistics.median(r[0] for r in runs),
                             statistics.median(r[1] for r in runs))
                rate = f"{dirty // 1024} MiB/s" if dirty else "0"
                lines.append(f"| {size} MiB | {rate} | {name} | {med[name][0]:.2f} | "
                             f"{med[name][1]:.0f} |")
            if len(med) == 2:
                t = med["qemu"][0] / med["libvirt"][0]
                d = (med["qemu"][1] / med["libvirt"][1]) if med["libvirt"][1] else float("nan")
                ratios.append(f"{size} MiB, dirty {dirty}: time x{t:.2f}, downtime x{d:.2f}")
    lines += ["", "qemu / libvirt: " + "; ".join(ratios)]
    text = "\n".join(lines) + "\n"
    with open(REPORT, "w") as f:
        f.write(text)
    print("\n" + text)
