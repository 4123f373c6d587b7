"""Does a live migration of a guest that dirties memory faster than the link finish?

Run with ``./dev.sh bench -k convergence -s`` (root: it starts its own two-host lab).

One 256 MiB lab guest keeps rewriting a ``RING_MIB`` (32) MiB ring of its memory with
random data (asked for 16 MiB/s; it manages 10-17 MiB/s under emulation) and is
migrated between the two lab hosts with the migration bandwidth capped at 2, 4, 8 and
24 MiB/s (``CAPS``), so the guest dirties about 6x, 3x, 1.5x and 0.6x what the link
carries, by four contenders in the same run:

``virsh``
    ``virsh migrate --live --p2p --bandwidth CAP`` with libvirt's and QEMU's defaults
    (300 ms max downtime, no post-copy, no throttling).
``nova``
    the libvirt driver with virtsdk's Nova-compatible defaults: ``linear_downtime``
    (Nova's schedule) + ``completion_timeout``.
``adaptive``
    the driver with the ``adaptive`` controller, post-copy not permitted (its CPU
    limit, the vCPUs' CFS bandwidth set before the start, is the "max throttle").
``adaptive+pc``
    the same, post-copy permitted (post-copy unlimited, QEMU's and Nova's default:
    the cap limits pre-copy).
``adaptive+pc-capped``
    the same with ``postcopy_bandwidth`` = the cap: the cap holds in post-copy too.

Every run is bounded to ``BOUND_S`` (90 s; env ``VIRTSDK_BENCH_BOUND``): a migration
still in pre-copy then is aborted (the guest stays where it was); one in post-copy is
left to finish.  Reported per run: converged, wall time of the migration call, the
downtime libvirt measured (completed job statistics; none for a run that did not
complete), the guest-observed pause, the bytes sent, and the model bound.

* Guest-observed pause: the guest prints a heartbeat every 0.5 s; a thread tails both
  hosts' console files every 20 ms and stamps each heartbeat as it arrives.  The pause
  is the longest interval between two consecutive heartbeats during the run minus
  the guest's normal interval (median before the run): what a client watching the
  guest would see stall, throttling slowdowns included.  (The guest's own clock stops
  while it is paused, so its uptime field cannot show the pause.)
* Model bound: the fastest any pre-copy or post-copy could move the guest, sending
  each non-zero page once: the bytes of the first memory pass (measured in the run
  of ``adaptive+pc``, or ``nova``) divided by the cap, plus that run's set-up time
  (from the call until the first byte moved: mostly starting QEMU on the destination,
  which no bandwidth changes).  Both parts are reported.

The table is printed at the end and written to ``/tmp/virtsdk-bench-convergence.md``,
with the machine's load average at the start and end (the machine is shared).
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
from virtsdk_libvirt import xmlutil
from virtsdk_libvirt.live_migration.job import job_stats_from_libvirt
from virtsdk_libvirt.live_migration.source import destination_spec, limit_vcpus
from virtsdk_libvirt.live_migration.xml_rewrite import rewrite_for_destination

from benchmarks.lab_migration import (
    CTX,
    NET,
    finish,
    lab_drivers,
    lab_guest_image,
    prepare,
    rollback,
    two_host_lab,
)
from virtsdk.live_migration import opts as lm_opts
from virtsdk.objects import Flavor, ImageMeta, Instance, JobStats

CAPS = [int(c) for c in os.environ.get("VIRTSDK_BENCH_CAPS", "2,4,8,24").split(",")]
MODES = os.environ.get("VIRTSDK_BENCH_MODES",
                       "virsh,nova,adaptive,adaptive+pc,adaptive+pc-capped").split(",")
BOUND_S = float(os.environ.get("VIRTSDK_BENCH_BOUND", "90"))
#: ``[live_migration] max_throttle`` for the driver's runs (unset: the option's default)
MAX_THROTTLE = os.environ.get("VIRTSDK_BENCH_MAX_THROTTLE")
MEMORY_MIB = 256
RING_MIB = 32
DIRTY_KBPS = 16384
REPORT = "/tmp/virtsdk-bench-convergence.md"
MiB = 1024**2


@dataclass
class Run:
    cap: int
    mode: str
    converged: bool = False
    postcopy: bool = False
    seconds: float = 0.0
    downtime_ms: int | None = None
    pause_ms: float | None = None
    bytes_sent: int = 0
    first_pass: int = 0
    setup_s: float = 0.0
    throttle: int = 0
    decisions: list[str] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)


RESULTS: list[Run] = []
#: CPU limits (percent of the vCPU's time taken away) the frontier test holds the guest at
LIMITS = [int(c) for c in os.environ.get("VIRTSDK_BENCH_LIMITS",
                                         "0,50,70,80,85,90,95").split(",")]
#: (limit %, dirty rate bytes/s, longest heartbeat gap s, median gap s) per limit
FRONTIER: list[tuple[int, float, float, float]] = []


class HeartbeatWatch:
    """Stamps each heartbeat of one boot with the host time it reached a console file."""

    def __init__(self, paths: list[Path], boot_id: str) -> None:
        self.paths = paths
        self.prefix = f"HEARTBEAT {boot_id} "
        self.arrivals: dict[int, float] = {}
        self._offsets = {p: 0 for p in paths}
        self._partial = {p: "" for p in paths}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HeartbeatWatch:
        for p in self.paths:  # skip what is already there
            self._offsets[p] = p.stat().st_size if p.exists() else 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            now = time.monotonic()
            for p in self.paths:
                try:
                    with open(p, "rb") as f:
                        f.seek(self._offsets[p])
                        data = f.read()
                except FileNotFoundError:
                    continue
                if not data:
                    continue
                self._offsets[p] += len(data)
                text = self._partial[p] + data.decode(errors="replace")
                lines = text.split("\n")
                self._partial[p] = lines.pop()
                for line in lines:
                    at = line.find(self.prefix)
                    if at < 0:
                        continue
                    try:
                        seq = int(line[at + len(self.prefix):].split()[0])
                    except (IndexError, ValueError):
                        continue
                    self.arrivals.setdefault(seq, now)

    def gaps(self) -> list[float]:
        seqs = sorted(self.arrivals)
        return [self.arrivals[b] - self.arrivals[a] for a, b in zip(seqs, seqs[1:], strict=False)
                if b == a + 1]


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    yield from two_host_lab("conv")


@pytest.fixture(scope="module")
def guest_image() -> Any:
    return lab_guest_image()


@pytest.fixture(scope="module")
def drivers(lab: Any) -> Iterator[tuple[Any, Any]]:
    for driver_pair in lab_drivers(lab):
        for d in driver_pair:
            lm_opts.register_opts(d.conf)
        yield driver_pair


@contextlib.contextmanager
def configured(driver: Any, **values: Any) -> Iterator[None]:
    """``group__name`` option overrides for one run."""
    keys = []
    for key, value in values.items():
        group, _, name = key.partition("__")
        driver.conf.set_override(name, value, group)
        keys.append((name, group))
    try:
        yield
    finally:
        for name, group in keys:
            driver.conf.clear_override(name, group)


def first_pass_bytes(samples: list[JobStats]) -> int:
    """Bytes sent by the first memory pass: memory processed when the second began."""
    later = [s.memory_processed for s in samples if s.memory_iteration >= 2]
    return min(later) if later else 0


def via_driver(src: Any, dst: Any, inst: Instance, run: Run) -> None:
    data = prepare(src, dst, inst)
    samples: list[JobStats] = []
    done: list[str] = []
    moving: list[float] = []

    def progress(stats: JobStats) -> None:
        samples.append(stats)
        if stats.data_processed > 0 and not moving:
            moving.append(time.monotonic())

    postcopy = run.mode.startswith("adaptive+pc")
    policies = ["linear_downtime", "completion_timeout"] if run.mode == "nova" else ["adaptive"]
    timer = threading.Timer(BOUND_S, _abort_quietly, (src, inst))
    with configured(src, live_migration__policies=policies,
                    live_migration__permit_post_copy=postcopy,
                    **({"live_migration__max_throttle": int(MAX_THROTTLE)}
                       if MAX_THROTTLE else {}),
                    live_migration__postcopy_bandwidth=(
                        run.cap if run.mode == "adaptive+pc-capped" else 0),
                    libvirt__live_migration_bandwidth=run.cap):
        start = time.monotonic()
        timer.start()
        try:
            src.live_migration(CTX, inst, dst.host, lambda *a: done.append("post"),
                               lambda *a: done.append("recover"), migrate_data=data,
                               progress=progress)
        except Exception:  # noqa: BLE001 - an aborted run raises; the outcome says so
            pass
        finally:
            timer.cancel()
        run.seconds = time.monotonic() - start
    run.setup_s = moving[0] - start if moving else 0.0
    final = samples[-1]
    run.converged = done == ["post"]
    run.postcopy = final.postcopy
    run.downtime_ms = final.downtime_ms if final.downtime_measured else None
    run.bytes_sent = final.data_processed
    run.first_pass = first_pass_bytes(samples)
    run.throttle = max(s.cpu_throttle for s in samples)
    for entry in final.timeline:  # the CPU limit set before the start (vCPU bandwidth)
        limit = re.search(r"CPU limit (\d+)% for the migration", entry["reason"])
        if limit:
            run.throttle = max(run.throttle, int(limit.group(1)))
    run.decisions = [f"{e['t_s']:.0f}s {e['action']} {e['value']} [{e['outcome']}] "
                     f"({e['reason']})" for e in final.timeline]
    if run.converged:
        finish(src, dst, inst, data)
        # the limit was for the migration only: the guest runs unlimited where it arrived
        assert dst._lookup(inst).schedulerParameters()["vcpu_quota"] == -1  # noqa: SLF001
    else:
        assert done == ["recover"], done
        assert src._lookup(inst).schedulerParameters()["vcpu_quota"] == -1  # noqa: SLF001
        rollback(src, dst, inst, data)


def _abort_quietly(driver: Any, inst: Instance) -> None:
    with contextlib.suppress(Exception):  # post-copy started or the job just ended
        driver.live_migration_abort(inst)


def via_virsh(src: Any, dst: Any, inst: Instance, dst_host: Any, run: Run) -> None:
    data = prepare(src, dst, inst)
    dom = src._lookup(inst)  # noqa: SLF001
    xml = xmlutil.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE
                                    | libvirt.VIR_DOMAIN_XML_SECURE))
    spec = destination_spec(data, str(src._paths.instance_dir(inst)),  # noqa: SLF001
                            str(src._paths.image_cache))  # noqa: SLF001
    last: list[JobStats] = []
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xmlutil.to_string(rewrite_for_destination(xml, spec)))
        f.flush()
        cmd = ["virsh", "-c", src._host.uri, "migrate", "--live", "--p2p",  # noqa: SLF001
               "--persistent", "--undefinesource", "--xml", f.name,
               "--bandwidth", str(run.cap), "--migrateuri", f"tcp://{dst_host.address}",
               inst.name, dst_host.libvirt_uri]
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        aborted = False
        while proc.poll() is None:
            time.sleep(0.5)
            with contextlib.suppress(libvirt.libvirtError):
                sample = job_stats_from_libvirt(dom.jobStats())
                if sample.data_total:
                    last.append(sample)
                    if sample.data_processed > 0 and not run.setup_s:
                        run.setup_s = time.monotonic() - start
            if not aborted and time.monotonic() - start > BOUND_S:
                aborted = True
                with contextlib.suppress(libvirt.libvirtError):
                    dom.abortJob()
        proc.communicate(timeout=120)
        run.seconds = time.monotonic() - start
    run.converged = proc.returncode == 0
    run.first_pass = first_pass_bytes(last)
    if run.converged:
        conn = libvirt.openReadOnly(dst_host.libvirt_uri)
        try:
            final = job_stats_from_libvirt(dict(conn.lookupByName(inst.name).jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)))
        finally:
            conn.close()
        run.downtime_ms = final.downtime_ms if final.downtime_measured else None
        run.bytes_sent = final.data_processed
        finish(src, dst, inst, data)
    else:
        run.bytes_sent = last[-1].data_processed if last else 0
        rollback(src, dst, inst, data)


@dataclass
class Guest:
    inst: Instance
    logs: list[Path]
    boot: str
    here: tuple[Any, Any]
    there: tuple[Any, Any]


@pytest.fixture(scope="module")
def guest(lab: Any, drivers: tuple[Any, Any], guest_image: Any) -> Iterator[Guest]:
    """The dirtying guest, booted on host A; ``here`` is where it runs now."""
    a, b = drivers
    image = ImageMeta(id="conv", properties={
        "kernel": str(guest_image.kernel), "initrd": str(guest_image.initrd),
        "cmdline": guest_image.cmdline(dirty_kbps=DIRTY_KBPS, dirty_mib=RING_MIB,
                                       memcheck_mib=4)})
    inst = Instance(name="conv", flavor=Flavor("conv", MEMORY_MIB, 1, 0), image=image)
    a.spawn(CTX, inst, image, NET)
    from virtsdk_lab.guest import ConsoleLog

    try:
        logs = [Path(d._paths.console_log(inst)) for d in (a, b)]  # noqa: SLF001
        boot = ConsoleLog(logs[0]).wait_for_heartbeat(180).boot_id
        ConsoleLog(logs[0]).wait_for(r"DIRTY \d+", 60)
        yield Guest(inst, logs, boot, (a, lab.hosts[0]), (b, lab.hosts[1]))
    finally:
        for d in (a, b):
            d.destroy(CTX, inst, NET)


_DIRTYSTAT = re.compile(r"DIRTYSTAT (\d+) (\d+)")


def _dirtystats(log: Path) -> list[tuple[int, int]]:
    """(KiB rewritten, centiseconds) of every report of the guest's dirtier so far."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [(int(m.group(1)), int(m.group(2))) for m in _DIRTYSTAT.finditer(text)]


@pytest.mark.timeout(600)
def test_cpu_limit_frontier(guest: Guest) -> None:
    """What slowing the guest costs it, without any migration: for each CPU limit the
    rate the guest's dirtier achieved (its own count, reported every 5 s of its time)
    and the longest interval between its heartbeats.  Pre-copy converges only where
    the dirty rate is under the link; this shows what heartbeat gap that rate costs
    on this guest, whatever the controller."""
    driver = guest.here[0]
    dom = driver._lookup(guest.inst)  # noqa: SLF001
    log = Path(driver._paths.console_log(guest.inst))  # noqa: SLF001
    for limit in LIMITS:
        restore = limit_vcpus(dom, limit) if limit else None
        try:
            time.sleep(2)  # the guest settles at its new speed
            seen = len(_dirtystats(log))
            with HeartbeatWatch(guest.logs, guest.boot) as watch:
                deadline = time.monotonic() + 30
                while len(_dirtystats(log)) < seen + 2 and time.monotonic() < deadline:
                    time.sleep(0.5)
            gaps = watch.gaps() or [0.0]
        finally:
            if restore:
                restore()
        stats = _dirtystats(log)[seen:]
        (kib0, cs0), (kib1, cs1) = (stats[0], stats[-1]) if len(stats) >= 2 else ((0, 0),
                                                                                 (0, 1))
        dirty = (kib1 - kib0) * 1024 * 100 / max(1, cs1 - cs0)
        FRONTIER.append((limit, dirty, max(gaps), statistics.median(gaps)))
        print(f"\nCPU limit {limit}%: dirty {dirty / MiB:.1f} MiB/s, heartbeat gaps "
              f"max {max(gaps):.2f} s, median {statistics.median(gaps):.2f} s", flush=True)
        time.sleep(3)


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("cap", CAPS)
def test_convergence_cell(guest: Guest, cap: int) -> None:
    for mode in MODES:
        time.sleep(5)  # let the dirtier run at full speed again
        run = Run(cap, mode)
        load0 = os.getloadavg()[0]
        with HeartbeatWatch(guest.logs, guest.boot) as watch:
            time.sleep(3)  # the guest's normal heartbeat interval, before
            normal = statistics.median(watch.gaps() or [0.5])
            src, (dst, dst_host) = guest.here[0], guest.there
            if mode == "virsh":
                via_virsh(src, dst, guest.inst, dst_host, run)
            else:
                via_driver(src, dst, guest.inst, run)
            ended = time.monotonic()
            # the guest must go on beating wherever it is now (heartbeats after the
            # switch reach the file within a few seconds)
            while not any(t > ended + 1 for t in watch.arrivals.values()) \
                    and time.monotonic() < ended + 20:
                time.sleep(0.2)
            assert any(t > ended + 1 for t in watch.arrivals.values()), (
                f"the guest stopped beating after the {cap} MiB/s {mode} run")
        gaps = watch.gaps()  # none: no two consecutive heartbeats were seen
        run.pause_ms = max(0.0, 1000 * (max(gaps) - normal)) if gaps else None
        run.load = (load0, os.getloadavg()[0])
        RESULTS.append(run)
        print(f"\n{cap} MiB/s {mode}: {run}", flush=True)
        if run.converged:
            guest.here, guest.there = guest.there, guest.here


def _fmt_bool(run: Run) -> str:
    if not run.converged:
        return "no"
    return "yes (post-copy)" if run.postcopy else "yes"


def _frontier_lines() -> list[str]:
    if not FRONTIER:
        return []
    normal = FRONTIER[0][3] if FRONTIER[0][0] == 0 else 0.5
    lines = ["", "The guest held at a CPU limit, no migration (dirty rate: what the "
             "guest's dirtier rewrote over 5 s of its time; pause: longest heartbeat "
             "interval minus the normal one):", "",
             "| CPU limit | dirty rate (MiB/s) | longest heartbeat gap beyond normal (ms) |",
             "|---|---|---|"]
    for limit, dirty, longest, _median in FRONTIER:
        lines.append(f"| {limit}% | {dirty / MiB:.1f} | "
                     f"{max(0.0, 1000 * (longest - normal)):.0f} |")
    return lines


def teardown_module() -> None:
    if not RESULTS and not FRONTIER:
        return
    by_cell = {(r.cap, r.mode): r for r in RESULTS}
    lines = [
        f"Convergence: {MEMORY_MIB} MiB guest rewriting a {RING_MIB} MiB ring at up to "
        f"{DIRTY_KBPS // 1024} MiB/s, 2 lab hosts, QEMU TCG, each run bounded to "
        f"{BOUND_S:.0f} s",
        "",
        "| cap | contender | converged | time (s) | libvirt downtime (ms) | "
        "guest-observed pause (ms) | sent (MiB) | model bound (s): set-up + data / cap | "
        "time / bound | max throttle | load 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in RESULTS:
        ref = by_cell.get((run.cap, "adaptive+pc")) or by_cell.get((run.cap, "nova"))
        use = ref if ref and ref.first_pass else run
        transfer = use.first_pass / (run.cap * MiB)
        bound = use.setup_s + transfer if use.first_pass else 0.0
        ratio = f"{run.seconds / bound:.2f}x" if bound and run.converged else "-"
        down = str(run.downtime_ms) if run.downtime_ms is not None else "none"
        pause = f"{run.pause_ms:.0f}" if run.pause_ms is not None else "-"
        lines.append(
            f"| {run.cap} MiB/s | {run.mode} | {_fmt_bool(run)} | {run.seconds:.1f} | "
            f"{down} | {pause} | {run.bytes_sent / MiB:.0f} | {bound:.1f}: "
            f"{use.setup_s:.1f} + {use.first_pass / MiB:.0f} MiB / {run.cap} | {ratio} | "
            f"{run.throttle}% | {run.load[0]:.1f} -> {run.load[1]:.1f} |")
    lines += ["", "Goals:"]
    for mode, limit in (("adaptive", 500.0), ("adaptive+pc", 1000.0),
                        ("adaptive+pc-capped", 1000.0)):
        runs = [r for r in RESULTS if r.mode == mode]
        if not runs:
            continue
        ok = [r for r in runs if r.converged and (r.pause_ms or 0) <= limit]
        lines.append(f"- {mode}: {len(ok)} of {len(runs)} cells converged with pause <= "
                     f"{limit:.0f} ms")
    virsh = [r for r in RESULTS if r.mode == "virsh"]
    lines.append(f"- virsh: {sum(r.converged for r in virsh)} of {len(virsh)} converged")
    for run in RESULTS:
        v = by_cell.get((run.cap, "virsh"))
        if run.mode != "virsh" and v and v.converged and run.converged:
            lines.append(f"- {run.cap} MiB/s {run.mode}: bytes sent {run.bytes_sent / MiB:.0f}"
                         f" MiB vs virsh {v.bytes_sent / MiB:.0f} MiB "
                         f"({run.bytes_sent / max(1, v.bytes_sent):.2f}x)")
    lines += _frontier_lines()
    lines += ["", "Decisions (adaptive):"]
    for run in RESULTS:
        if run.mode.startswith("adaptive"):
            lines.append(f"- {run.cap} MiB/s {run.mode}: " + "; ".join(run.decisions))
    text = "\n".join(lines) + "\n"
    with open(REPORT, "w") as f:
        f.write(text)
    print("\n" + text)
