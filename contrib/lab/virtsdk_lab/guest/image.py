"""Build (once) and cache the test guest: Debian's cloud kernel + a busybox initramfs.

The kernel comes from the Debian package (``apt-get download`` + ``dpkg -x``, never
installed); the initramfs holds a static busybox, the virtio/ACPI modules and the
``/init`` of :mod:`virtsdk_lab.guest.init_script`.  Results live in
``<cache_dir>/<key>/`` where ``key`` hashes the whole recipe (init script, module
list, kernel package and version, busybox binary, recipe revision), so changing any
of them builds a new image and an unchanged recipe is never rebuilt.  Concurrent
builders (parallel pytest processes) serialise on an oslo.concurrency file lock.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from oslo_concurrency import lockutils, processutils

from virtsdk_lab.commands import run
from virtsdk_lab.errors import GuestImageError, LabError
from virtsdk_lab.guest import kmod
from virtsdk_lab.guest.init_script import INIT_SCRIPT, MODULES

DEFAULT_CACHE_DIR = Path("/var/cache/virtsdk/guest")
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
RECIPE_REVISION = "1"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DEFAULT_CMDLINE = "console=ttyS0 loglevel=3 mitigations=off panic=-1"
STALE_IMAGE_AGE_S = 7 * 24 * 3600
APT_STATE_PATHS = (Path("/var/lib/apt/lists"), Path("/var/cache/apt/pkgcache.bin"))


@dataclass(frozen=True)
class GuestImage:
    """A built test guest: boot it with direct kernel boot (``kernel``, ``initrd``)."""

    kernel: Path
    initrd: Path
    key: str
    kernel_package: str
    kernel_version: str
    cached: bool = False

    def cmdline(
        self,
        *,
        dirty_kbps: int = 0,
        dirty_mib: int = 32,
        memcheck_mib: int = 8,
        marker: str | None = None,
    ) -> str:
        """The kernel command line for a boot with the given guest behaviour.

        ``dirty_kbps`` > 0 keeps rewriting a ``dirty_mib`` MiB ring of guest memory
        with random data at about that rate; ``marker`` overwrites the disk marker.
        """
        parts = [DEFAULT_CMDLINE, f"vsdk.memcheck_mib={int(memcheck_mib)}"]
        if dirty_kbps:
            parts += [f"vsdk.dirty_kbps={int(dirty_kbps)}", f"vsdk.dirty_mib={int(dirty_mib)}"]
        if marker is not None:
            if not marker or not all(c.isalnum() or c in "-_" for c in marker):
                raise ValueError(f"a marker is letters, digits, '-' or '_', got {marker!r}")
            parts.append(f"vsdk.marker={marker}")
        return " ".join(parts)


def build_guest_image(
    cache_dir: Path = DEFAULT_CACHE_DIR, kernel_metapackage: str = KERNEL_METAPACKAGE
) -> GuestImage:
    """Return the test guest for the current recipe, building it if not cached.

    Called by the pytest ``guest_image`` fixture (root namespace).  Needs apt (with
    access to the Debian archive, ``apt-get update`` is run once if a download fails),
    ``dpkg``, ``cpio`` and a static busybox.  Raises :class:`GuestImageError` saying
    which step failed.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    package, version = _resolve_memoised(kernel_metapackage, cache_dir)
    busybox = find_static_busybox()
    key = recipe_key(package, version, busybox)
    target = cache_dir / key
    with lockutils.lock("guest-build", external=True, lock_path=str(cache_dir)):
        if not (target / "manifest.json").exists():
            _build(target, package, version, busybox, key)
            prune(cache_dir, keep=key)
            cached = False
        else:
            cached = True
    return GuestImage(kernel=target / "vmlinuz", initrd=target / "initrd.img", key=key,
                      kernel_package=package, kernel_version=version, cached=cached)


def resolve_kernel_package(metapackage: str) -> tuple[str, str]:
    """The versioned kernel package the metapackage points at, and its candidate version.

    If apt does not know the metapackage (a fresh machine without package lists),
    ``apt-get update`` is run once and the question asked again.
    """
    try:
        return _resolve(metapackage)
    except GuestImageError:
        run(["apt-get", "update", "-qq"], check=False, timeout=600)
        return _resolve(metapackage)


def _resolve(metapackage: str) -> tuple[str, str]:
    package = metapackage
    deps = _apt(["apt-cache", "depends", metapackage])
    for line in deps.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            package = line.split(":", 1)[1].strip()
            break
    show = _apt(["apt-cache", "show", "--no-all-versions", package])
    for line in show.splitlines():
        if line.startswith("Version:"):
            return package, line.split(":", 1)[1].strip()
    raise GuestImageError(f"apt knows no version of {package}")


def _apt_state() -> list[float]:
    """Modification times that change whenever ``apt-get update`` changes what apt knows."""
    stamps = []
    for path in APT_STATE_PATHS:
        try:
            stamps.append(path.stat().st_mtime)
        except OSError:
            stamps.append(0.0)
    return stamps


def _resolve_memoised(metapackage: str, cache_dir: Path) -> tuple[str, str]:
    """:func:`resolve_kernel_package`, remembered until apt's package lists change
    (asking apt costs about a second; a cached build should cost nothing)."""
    memo = cache_dir / f"resolved-{metapackage}.json"
    stamps = _apt_state()
    try:
        data = json.loads(memo.read_text())
        if data["apt_state"] == stamps:
            return str(data["package"]), str(data["version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    package, version = resolve_kernel_package(metapackage)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"apt_state": stamps, "package": package, "version": version}))
    tmp.replace(memo)
    return package, version


def find_static_busybox() -> Path:
    """A statically linked busybox (Debian busybox-static) for the initramfs."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and b"ld-linux" not in path.read_bytes()[:8192]:
            return path
    raise GuestImageError("no static busybox found (apt-get install busybox-static)")


def recipe_key(package: str, version: str, busybox: Path) -> str:
    """Content hash of everything that goes into the image."""
    digest = hashlib.sha256()
    for part in (RECIPE_REVISION, INIT_SCRIPT, ",".join(MODULES), DEFAULT_CMDLINE, package,
                 version):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(hashlib.sha256(busybox.read_bytes()).digest())
    return digest.hexdigest()[:16]


def prune(cache_dir: Path, keep: str, max_age_s: float = STALE_IMAGE_AGE_S) -> list[str]:
    """Remove images of other recipes unused for ``max_age_s`` (a run that still uses
    an older recipe keeps it); return the removed keys.  Called after a build."""
    removed = []
    now = time.time()
    for entry in sorted(cache_dir.iterdir()):
        if entry.name == keep or not (entry / "manifest.json").is_file():
            continue
        if now - _last_used(entry) > max_age_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _last_used(entry: Path) -> float:
    stamps = [0.0]
    for name in ("manifest.json", "vmlinuz", "initrd.img"):
        try:
            info = (entry / name).stat()
        except OSError:
            continue
        stamps += [info.st_mtime, info.st_atime]
    return max(stamps)


def _apt(cmd: list[str]) -> str:
    try:
        return run(cmd).stdout
    except LabError as exc:
        raise GuestImageError(f"cannot query apt for the guest kernel: {exc}") from exc


def _download(package: str, version: str, into: Path) -> Path:
    spec = f"{package}={version}"
    first = run(["apt-get", "download", spec], cwd=str(into), check=False, timeout=600)
    if first.returncode != 0:
        run(["apt-get", "update", "-qq"], check=False, timeout=600)
        again = run(["apt-get", "download", spec], cwd=str(into), check=False, timeout=600)
        if again.returncode != 0:
            raise GuestImageError(
                f"apt-get download {spec} failed:\n{first.stderr.strip()}\n{again.stderr.strip()}"
            )
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise GuestImageError(f"apt-get download {spec} produced no .deb in {into}")
    return debs[0]


def _build(target: Path, package: str, version: str, busybox: Path, key: str) -> None:
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        deb = _download(package, version, tmp)
        kernel_tree = tmp / "kernel"
        run(["dpkg", "-x", str(deb), str(kernel_tree)], timeout=300)
        vmlinuz = sorted((kernel_tree / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise GuestImageError(f"{deb.name} contains no boot/vmlinuz-*")
        modules = kmod.load_order(MODULES, kmod.index_modules(kernel_tree / "lib" / "modules"))
        out = tmp / "out"
        out.mkdir()
        shutil.copyfile(vmlinuz[-1], out / "vmlinuz")
        tree = tmp / "initramfs"
        _populate_initramfs(tree, busybox, modules)
        (out / "initrd.img").write_bytes(gzip.compress(_cpio_newc(tree), compresslevel=6))
        manifest = {"key": key, "kernel_package": package, "kernel_version": version,
                    "modules": [m.name for m in modules], "busybox": str(busybox)}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)


def _populate_initramfs(tree: Path, busybox: Path, modules: list[Path]) -> None:
    for sub in ("bin", "dev", "etc", "lib/modules", "proc", "sys", "tmp"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, tree / "bin" / "busybox")
    (tree / "bin" / "busybox").chmod(0o755)
    (tree / "bin" / "sh").symlink_to("busybox")
    for module in modules:
        shutil.copyfile(module, tree / "lib" / "modules" / module.name)
    (tree / "etc" / "modules.order").write_text("".join(f"{m.name}\n" for m in modules))
    (tree / "init").write_text(INIT_SCRIPT)
    (tree / "init").chmod(0o755)


def _cpio_newc(tree: Path) -> bytes:
    entries = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    try:
        archive, _err = processutils.execute(
            "cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet", cwd=str(tree),
            process_input="\n".join(entries).encode() + b"\n", binary=True,
        )
    except (processutils.ProcessExecutionError, OSError) as exc:
        raise GuestImageError(f"cpio failed to pack the initramfs: {exc}") from exc
    return bytes(archive)
