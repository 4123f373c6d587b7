"""Disk transfer for cold migration between two lab hosts, end to end: every
transport against the tools Nova uses and against a raw-TCP floor, in one run.

Run with ``./dev.sh bench -k disk_transfer -s`` (root: it starts a two-host lab).
Images are made at benchmark time in host A's instances directory:

* ``sparse5g``  5 GiB raw holding 1 GiB of random data in 16 extents at unaligned offsets
* ``dense1g``   1 GiB of random data
* ``qcow2``     a qcow2 overlay (256 MiB of random writes) on a 512 MiB raw base
* ``extents``   1 GiB raw with 16384 extents of 4 KiB (64 MiB of data)

The headline is **end to end** (``stream``, ``rsync``, ``scp``): from asking the
destination to receive (``prepare_receive``, which starts the stream receiver on
host B) until it reports the disk arrived (``finish_receive``: every file verified
and, for stream, fsynced).  The sending side runs on host A in a process started
before the clock and kept loaded, as a compute service would be
(``transfer_send.py``); only handing it the ticket is timed.  ``stream_send`` is
the time its ``send`` call took in the same runs.

The floor is ``floor`` (``transfer_tcpfloor.py``): the image's *allocated* bytes as a
dense file, sent from A with kernel ``sendfile`` to a Python ``recv_into`` + ``write``
loop on B that fsyncs at the end (timed from ``accept`` to the end of the fsync).
``nc`` moves the same dense file with netcat (no fsync).  ``sparse_write`` is not a
transfer but what keeping the holes costs the destination's disk alone: the image's
non-zero runs (read into memory beforehand, untimed) written with one ``pwrite`` each
at their offsets into a new sparse file on the destination's disk, then ``fsync``
(for many small runs this is far above the dense floor).  ``sparse_write_c`` is the
same with no interpreter in the way (``sparse_write.c``, compiled with ``cc`` at
benchmark time, one ``pwrite`` per run in C, timed in C from ``open`` to the end of
the ``fsync``): the kernel's own price of the holes, which no hole-keeping transfer
can beat.  ``local`` and ``cp
--sparse=always`` copy on this machine (shared-storage case).  The destination is
host B's instances directory on the machine's disk (``VIRTSDK_BENCH_DEST=tmpfs``:
``/dev/shm`` instead).  Every round starts after ``sync`` with an empty destination;
the fast tools run interleaved, ``ROUNDS`` (5; ``VIRTSDK_BENCH_ROUNDS``) times,
scp and rsync once (``VIRTSDK_BENCH_SLOW_ROUNDS``); times are medians.  The
machine's load average is recorded with the table, which is printed at the end and
written to ``/tmp/virtsdk-bench-disk-transfer.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from tests.transfer.conftest import make_sparse, same_content
from tests.transfer.sshd_fixture import Sshd, running_sshd
from virtsdk.transfer.base import HostEndpoint, SendFile, load_transport
from virtsdk.transfer.extents import iter_runs

MiB, GiB = 1 << 20, 1 << 30
ROUNDS = int(os.environ.get("VIRTSDK_BENCH_ROUNDS", "5"))
#: "disk" (default): host B writes into its instances directory; "tmpfs": /dev/shm.
DEST = os.environ.get("VIRTSDK_BENCH_DEST", "disk")
#: scp / rsync take 10-40x longer: one round each unless VIRTSDK_BENCH_SLOW_ROUNDS says more
SLOW_ROUNDS = int(os.environ.get("VIRTSDK_BENCH_SLOW_ROUNDS", "1"))
NC_PORT = 40111
HELPER = str(Path(__file__).with_name("transfer_send.py"))
TCP_FLOOR = str(Path(__file__).with_name("transfer_tcpfloor.py"))
REPORT = "/tmp/virtsdk-bench-disk-transfer.md"

IMAGES = ["sparse5g", "dense1g", "qcow2", "extents"]
TOOLS = ["floor", "sparse_write", "sparse_write_c", "nc", "stream", "stream_send", "local",
         "cp", "rsync", "scp"]
SPARSE_WRITE_C = str(Path(__file__).with_name("sparse_write.c"))
#: What the headline ratio (stream / floor) must stay under, per image.
TARGETS = {"sparse5g": 1.2, "dense1g": 1.2, "qcow2": 1.2, "extents": 1.5}
LOADS: list[float] = []
#: (image, tool) -> seconds of each round; (image, tool) -> verification notes
TIMES: dict[tuple[str, str], list[float]] = {}
CHECKS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from virtsdk_lab.lab import Lab

    with Lab(name="xfer", hosts=2) as the_lab:
        yield the_lab


@pytest.fixture(scope="module")
def sshd(lab: Any) -> Iterator[Sshd]:
    dst = lab.hosts[1]
    with running_sshd(dst.address, exec_prefix=dst.exec_prefix, port=2222) as server:
        yield server


def _dense(path: str, size: int, source: str) -> str:
    with open(source, "rb") as src, open(path, "wb") as out:
        left = size
        while left:
            chunk = src.read(min(left, 64 * MiB))
            if not chunk:
                src.seek(0)
                continue
            out.write(chunk)
            left -= len(chunk)
    return path


@pytest.fixture(scope="module")
def images(lab: Any) -> Iterator[dict[str, tuple[str, str]]]:
    """image -> (path on host A, dense floor file of the image's allocated size)."""
    root = Path(lab.hosts[0].instances_path) / "bench-src"
    root.mkdir(parents=True, exist_ok=True)
    rnd = str(root / "random-1g")
    with open(rnd, "wb") as fh:
        for _ in range(16):
            fh.write(os.urandom(64 * MiB))
    out: dict[str, tuple[str, str]] = {}
    with open(rnd, "rb") as fh:  # unaligned: extents start and end inside a 4 KiB block
        sparse = make_sparse(str(root / "sparse5g.raw"), 5 * GiB,
                             [(i * 320 * MiB + 12345 + i * 777, fh.read(64 * MiB))
                              for i in range(16)])
    out["sparse5g"] = (sparse, "")
    out["dense1g"] = (rnd, rnd)
    base = _dense(str(root / "base.raw"), 512 * MiB, rnd)
    overlay = str(root / "overlay.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw",
                    overlay], check=True)
    chunk = _dense(str(root / "chunk"), 64 * MiB, rnd)
    cmds = []
    for i in range(4):
        cmds += ["-c", f"write -s {chunk} {i * 128}M 64M"]
    subprocess.run(["qemu-io", *cmds, overlay], check=True, capture_output=True)
    os.unlink(chunk)
    extents = make_sparse(str(root / "extents.raw"), GiB, [])
    with open(extents, "r+b") as fh, open(rnd, "rb") as src:
        data = src.read(64 * MiB)
        for i in range(16384):
            os.pwrite(fh.fileno(), data[i * 4096:(i + 1) * 4096], i * 64 * 1024)
    os.sync()  # settle delayed allocation: st_blocks then counts extent-tree blocks too
    out["qcow2"] = (overlay, "")
    out["extents"] = (extents, "")
    for name, (path, floor) in list(out.items()):
        if not floor:  # a dense file of the image's allocated size
            out[name] = (path, _dense(str(root / f"floor-{name}"),
                                      os.stat(path).st_blocks * 512, rnd))
    for path, floor in out.values():  # warm the page cache, as a recently stopped guest would
        for p in (path, floor):
            subprocess.run(["cat", p], stdout=subprocess.DEVNULL, check=True)
    yield out
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(_dest(lab), ignore_errors=True)


def _dest(lab: Any) -> Path:
    if DEST == "tmpfs":
        return Path("/dev/shm") / f"virtsdk-bench-dst-{os.getpid()}"
    return Path(lab.hosts[1].instances_path) / "bench-dst"


def _fresh_dest(lab: Any) -> Path:
    dest = _dest(lab)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    os.sync()
    return dest


class Sender:
    """The sending side on host A: one loaded process that runs a job per line."""

    def __init__(self, lab: Any) -> None:
        self.proc = subprocess.Popen([*lab.hosts[0].exec_prefix, sys.executable, HELPER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the benchmark's sender did not start")

    def send(self, transport: str, ticket: dict[str, Any], files: list[list[str]],
             overrides: dict[str, dict[str, Any]]) -> float:
        """Run one ``send`` on host A; returns the seconds it took there."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"transport": transport, "ticket": ticket,
                                          "files": files, "overrides": overrides}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sender died during a {transport} transfer")
        return float(json.loads(line)["wall"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def sender(lab: Any) -> Iterator[Sender]:
    the_sender = Sender(lab)
    yield the_sender
    the_sender.close()


def _conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="virtsdk-bench")
    return conf


def _nc(lab: Any, floor: str, dest: Path) -> float:
    a, b = lab.hosts
    out = str(dest / "floor")
    with open(out, "wb") as sink:
        listener = subprocess.Popen([*b.exec_prefix, "nc", "-l", b.address, str(NC_PORT)],
                                    stdout=sink)
    try:
        deadline = time.monotonic() + 10
        while b"LISTEN" not in subprocess.run(
                [*b.exec_prefix, "ss", "-Hltn", f"sport = :{NC_PORT}"],
                capture_output=True).stdout + b"LISTEN" * (time.monotonic() > deadline):
            time.sleep(0.02)
        started = time.perf_counter()
        with open(floor, "rb") as src:
            subprocess.run([*a.exec_prefix, "nc", "-N", b.address, str(NC_PORT)], stdin=src,
                           check=True)
        listener.wait(120)
        return time.perf_counter() - started
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def _floor(lab: Any, floor: str, dest: Path) -> float:
    """The floor (see transfer_tcpfloor.py); seconds as the receiver on host B
    measured them, fsync included."""
    a, b = lab.hosts
    recv = subprocess.Popen([*b.exec_prefix, sys.executable, TCP_FLOOR, "recv", b.address,
                             str(NC_PORT + 1), str(dest / "floor")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None
        if recv.stdout.readline().strip() != "ready":
            raise RuntimeError("the TCP floor receiver did not start")
        subprocess.run([*a.exec_prefix, sys.executable, TCP_FLOOR, "send", b.address,
                        str(NC_PORT + 1), floor], check=True, timeout=300)
        out, _ = recv.communicate(timeout=300)
        return float(out.strip().splitlines()[-1])
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()


def _end_to_end(lab: Any, sender: Sender, name: str, src: str | list[str], dest: Path,
                overrides: dict[str, dict[str, Any]], sshd: Sshd | None,
                image: str = "") -> float:
    """``prepare_receive`` on B, ``send`` on A, ``finish_receive`` on B; seconds from
    the first to the end of the last.  The send's own seconds go to ``stream_send``."""
    conf = _conf()
    if sshd is not None:
        overrides = {"transport_ssh": {"port": sshd.port, "key_file": sshd.client_key,
                                       "user": "root"}}
    transport = load_transport(name, conf)  # registers its options
    for group, values in overrides.items():
        for key, value in values.items():
            conf.set_override(key, value, group=group)
    b = lab.hosts[1]
    files = [[src, "disk"]] if isinstance(src, str) else \
        [[path, f"disk{i}"] for i, path in enumerate(src)]
    started = time.perf_counter()
    ticket = transport.prepare_receive(str(dest), HostEndpoint(b.address, b.exec_prefix))
    try:
        send_seconds = sender.send(name, ticket, files, overrides)
        transport.finish_receive(ticket, timeout=900)
    except BaseException:
        transport.cancel_receive(ticket)
        raise
    seconds = time.perf_counter() - started
    if image and name == "stream":
        TIMES.setdefault((image, "stream_send"), []).append(send_seconds)
    return seconds


#: image path -> its non-zero runs (offset, data), read once
_RUNS: dict[str, list[tuple[int, bytes]]] = {}


def _runs_of(src: str) -> list[tuple[int, bytes]]:
    """``src``'s non-zero runs (offset, data), read once."""
    if src not in _RUNS:
        with open(src, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            _RUNS[src] = [(run.offset, bytes(run.data)) for run in iter_runs(fh.fileno(), size)]
    return _RUNS[src]


def _sparse_write(src: str, dest: Path) -> float:
    """Seconds to write ``src``'s non-zero runs (already in memory) at their offsets
    into a new sparse file under ``dest`` and fsync it: the destination's share of
    any sparse-preserving transfer, with no network and no checksums."""
    runs, size = _runs_of(src), os.path.getsize(src)
    started = time.perf_counter()
    fd = os.open(dest / "disk", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(fd, size)
        for offset, data in runs:
            os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def sparse_write_c() -> Iterator[str]:
    """The compiled ``sparse_write.c`` (skips its column where there is no cc)."""
    if shutil.which("cc") is None:
        yield ""
        return
    with tempfile.TemporaryDirectory(prefix="virtsdk-bench-") as tmp:
        exe = os.path.join(tmp, "sparse_write")
        subprocess.run(["cc", "-O2", "-o", exe, SPARSE_WRITE_C], check=True)
        try:
            yield exe
        finally:
            for files in _RUN_FILES.values():
                for path in files:
                    os.unlink(path)
            _RUN_FILES.clear()


#: image path -> (run table file, data file) for sparse_write.c, in /dev/shm
_RUN_FILES: dict[str, tuple[str, str]] = {}


def _sparse_write_c(exe: str, src: str, dest: Path) -> float:
    """``_sparse_write`` in C (see ``sparse_write.c``); seconds as it measured them."""
    if src not in _RUN_FILES:
        base = f"/dev/shm/virtsdk-bench-{os.getpid()}-{len(_RUN_FILES)}"
        with open(f"{base}.runs", "wb") as table_out, open(f"{base}.data", "wb") as data_out:
            for offset, chunk in _runs_of(src):
                table_out.write(struct.pack("=QQ", offset, len(chunk)))
                data_out.write(chunk)
        _RUN_FILES[src] = (f"{base}.runs", f"{base}.data")
    table, data = _RUN_FILES[src]
    out = subprocess.run([exe, table, data, str(os.path.getsize(src)), str(dest / "disk")],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


def _runs(lab: Any, sender: Sender, image: str, src: str, floor: str, sshd: Sshd,
          exe: str) -> dict[str, Callable[[Path], float]]:
    runs: dict[str, Callable[[Path], float]] = {
        "floor": lambda d: _floor(lab, floor, d),
        "sparse_write": lambda d: _sparse_write(src, d),
        "sparse_write_c": lambda d: _sparse_write_c(exe, src, d),
        "nc": lambda d: _nc(lab, floor, d),
        "stream": lambda d: _end_to_end(lab, sender, "stream", src, d, {}, None, image),
        "rsync": lambda d: _end_to_end(lab, sender, "rsync", src, d, {}, sshd),
        "scp": lambda d: _end_to_end(lab, sender, "scp", src, d, {}, sshd),
        "local": lambda d: _local(src, d),
        "cp": lambda d: _timed(["cp", "--sparse=always", src, str(d / "disk")]),
    }
    if not exe:
        del runs["sparse_write_c"]
    return runs


def _check(image: str, tool: str, src: str, dest: Path) -> None:
    if tool in ("nc", "floor"):
        CHECKS[(image, tool)] = f"{os.path.getsize(dest / 'floor') >> 20} MiB moved"
        return
    got = str(dest / "disk")
    identical = same_content(src, got)
    src_blocks, dst_blocks = os.stat(src).st_blocks, os.stat(got).st_blocks
    CHECKS[(image, tool)] = (f"{'identical' if identical else 'DIFFERENT'}, "
                             f"dest {dst_blocks * 512 >> 20} MiB allocated "
                             f"(source {src_blocks * 512 >> 20} MiB)")
    assert identical, f"{tool} corrupted {image}"
    if tool != "scp":
        assert dst_blocks <= src_blocks, f"{tool} lost sparseness on {image}"


def _measure(lab: Any, sender: Sender, image: str, images: dict[str, tuple[str, str]],
             sshd: Sshd, exe: str) -> None:
    """Every tool on one image; the fast ones interleaved round by round so that
    noise from the rest of the machine hits them alike."""
    src, floor = images[image]
    runs = _runs(lab, sender, image, src, floor, sshd, exe)
    for rnd in range(ROUNDS):
        LOADS.append(os.getloadavg()[0])
        for tool, run in runs.items():
            if tool in ("rsync", "scp") and rnd >= SLOW_ROUNDS:
                continue
            dest = _fresh_dest(lab)
            TIMES.setdefault((image, tool), []).append(run(dest))
            if rnd == 0:
                _check(image, tool, src, dest)


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def _local(src: str, dest: Path) -> float:
    transport = load_transport("local", _conf())
    ticket = transport.prepare_receive(str(dest), HostEndpoint("127.0.0.1"))
    started = time.perf_counter()
    transport.send([SendFile(src, "disk")], ticket)
    seconds = time.perf_counter() - started
    transport.finish_receive(ticket, timeout=60)
    return seconds


@pytest.mark.parametrize("image", IMAGES)
def test_disk_transfer(benchmark: Any, lab: Any, sender: Sender,
                       images: dict[str, tuple[str, str]], sshd: Sshd, image: str,
                       sparse_write_c: str) -> None:
    benchmark.pedantic(_measure, args=(lab, sender, image, images, sshd, sparse_write_c),
                       rounds=1, iterations=1)
    for (img, tool), samples in TIMES.items():
        if img == image:
            benchmark.extra_info[f"{tool}_median_s"] = round(statistics.median(samples), 3)


def test_parallel_disks(benchmark: Any, lab: Any, sender: Sender,
                        images: dict[str, tuple[str, str]]) -> None:
    """Two 512 MiB disks of one instance over ``stream``, one at a time vs both at
    once (``[disk_transfer] parallel_files``)."""
    root = Path(images["dense1g"][0]).parent
    disks = [_dense(str(root / f"pdisk{i}"), 512 * MiB, images["dense1g"][0]) for i in (0, 1)]
    for d in disks:
        subprocess.run(["cat", d], stdout=subprocess.DEVNULL, check=True)

    def measure() -> None:
        for _ in range(ROUNDS):
            for n in (1, 2):
                seconds = _end_to_end(lab, sender, "stream", disks, _fresh_dest(lab),
                                      {"disk_transfer": {"parallel_files": n}}, None)
                TIMES.setdefault(("2x512m", f"stream_parallel{n}"), []).append(seconds)

    benchmark.pedantic(measure, rounds=1, iterations=1)


def test_compression_choice(benchmark: Any, lab: Any, sender: Sender,
                            images: dict[str, tuple[str, str]]) -> None:
    """512 MiB of compressible text (log lines) over ``stream`` with zstd off, on and
    auto, next to the nc floor for the same bytes."""
    root = Path(images["dense1g"][0]).parent
    text = str(root / "text.raw")
    with open(text, "wb") as fh:
        line = 0
        while fh.tell() < 512 * MiB:
            fh.write(b"".join(b"%010d INFO compute.manager instance %d state ACTIVE\n"
                              % (line + i, (line + i) % 977) for i in range(100000)))
            line += 100000
        fh.truncate(512 * MiB)
    subprocess.run(["cat", text], stdout=subprocess.DEVNULL, check=True)

    def measure() -> None:
        for _ in range(ROUNDS):
            TIMES.setdefault(("text512m", "floor"), []).append(
                _floor(lab, text, _fresh_dest(lab)))
            for mode in ("off", "on", "auto"):
                seconds = _end_to_end(lab, sender, "stream", text, _fresh_dest(lab),
                                      {"transport_stream": {"compression": mode}}, None)
                TIMES.setdefault(("text512m", f"stream_zstd_{mode}"), []).append(seconds)

    benchmark.pedantic(measure, rounds=1, iterations=1)


CHECKSUM_RATES: dict[str, float] = {}


def test_checksum_cost(benchmark: Any) -> None:
    """MiB/s of each per-run checksum over 4 MiB runs (what one side pays per GiB)."""
    from virtsdk.transfer.extents import CHECKSUMS

    data = memoryview(os.urandom(256 * MiB))

    def measure() -> None:
        for name, (fn, _size) in CHECKSUMS.items():
            started = time.perf_counter()
            for off in range(0, len(data), 4 * MiB):
                fn(data[off:off + 4 * MiB])
            CHECKSUM_RATES[name] = 256 / (time.perf_counter() - started)

    benchmark.pedantic(measure, rounds=1, iterations=1)


def _median(image: str, tool: str) -> float | None:
    samples = TIMES.get((image, tool))
    return statistics.median(samples) if samples else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def test_zz_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Print (and save) the table with the ratios the targets are stated in."""
    if not TIMES and not CHECKSUM_RATES:
        pytest.skip("no measurements (run the whole module)")
    loads = f"load average {min(LOADS):.1f}-{max(LOADS):.1f}" if LOADS else ""
    lines = [f"Destination: {DEST}; {os.cpu_count()} cores; {loads} during the rounds.", "",
             "| image | tool | median s | rounds (s) | result |", "|---|---|---|---|---|"]
    for image in IMAGES:
        for tool in TOOLS:
            m = _median(image, tool)
            if m is not None:
                rounds = " ".join(f"{t:.2f}" for t in TIMES[(image, tool)])
                lines.append(f"| {image} | {tool} | {m:.2f} | {rounds} | "
                             f"{CHECKS.get((image, tool), '')} |")
    lines += ["", "| image | **stream end to end / floor** (target) | stream / sparse_write "
                  "| stream / sparse_write_c | sparse_write_c / floor "
                  "| stream / nc | rsync / stream | scp / stream | local / cp |",
              "|---|---|---|---|---|---|---|---|---|"]
    for image in IMAGES:
        s, c = _median(image, "stream"), _median(image, "sparse_write_c")
        lines.append(
            f"| {image} | **{_ratio(s, _median(image, 'floor'))}** "
            f"(<= {TARGETS[image]}x) | {_ratio(s, _median(image, 'sparse_write'))} "
            f"| {_ratio(s, c)} | {_ratio(c, _median(image, 'floor'))} "
            f"| {_ratio(s, _median(image, 'nc'))} "
            f"| {_ratio(_median(image, 'rsync'), s)} | {_ratio(_median(image, 'scp'), s)} "
            f"| {_ratio(_median(image, 'local'), _median(image, 'cp'))} |")
    p1, p2 = _median("2x512m", "stream_parallel1"), _median("2x512m", "stream_parallel2")
    if p1 and p2:
        lines += ["", f"Two 512 MiB disks over stream: one at a time {p1:.2f} s, both at once "
                      f"{p2:.2f} s ({_ratio(p2, p1)})."]
    if ("text512m", "floor") in TIMES:
        floor = _median("text512m", "floor")
        lines += ["", "512 MiB of compressible text over stream, end to end: floor "
                  f"{floor:.2f} s; " + "; ".join(
                      f"zstd {m} {_median('text512m', f'stream_zstd_{m}'):.2f} s "
                      f"({_ratio(_median('text512m', f'stream_zstd_{m}'), floor)} of floor)"
                      for m in ("off", "on", "auto"))]
    if CHECKSUM_RATES:
        lines += ["", "Per-run checksum cost: " + ", ".join(
            f"{n} {r:.0f} MiB/s" for n, r in sorted(CHECKSUM_RATES.items(),
                                                    key=lambda kv: -kv[1]))]
    text = "\n".join(lines) + "\n"
    with open(REPORT, "w") as fh:
        fh.write(text)
    with capsys.disabled():
        print("\n" + text)
