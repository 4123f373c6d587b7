"""Kernel module dependency order, read from the ``.ko`` files themselves.

A kernel unpacked with ``dpkg -x`` has no ``modules.dep`` (depmod runs at install),
so the ``depends=`` entry of each module's ``.modinfo`` section is read directly.
Called by the guest image build on the test host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from virtsdk_lab.errors import GuestImageError

_DEPENDS = re.compile(rb"(?:^|\x00)depends=([^\x00]*)\x00")


def _key(name: str) -> str:
    return name.replace("-", "_")


def index_modules(modules_dir: Path) -> dict[str, Path]:
    """Map normalised module name -> ``.ko`` path under ``modules_dir``."""
    found: dict[str, Path] = {}
    for path in modules_dir.rglob("*.ko"):
        found[_key(path.stem)] = path
    if not found:
        raise GuestImageError(f"no kernel modules (*.ko) under {modules_dir}")
    return found


def module_depends(path: Path) -> list[str]:
    """The modules ``path`` depends on, from its ``depends=`` modinfo entry."""
    match = _DEPENDS.search(path.read_bytes())
    if match is None or not match.group(1):
        return []
    return [_key(d) for d in match.group(1).decode().split(",") if d]


def load_order(wanted: Iterable[str], modules: dict[str, Path]) -> list[Path]:
    """``.ko`` files for ``wanted`` and their dependencies, dependencies first.

    Modules built into the kernel are simply absent from ``modules`` and skipped only
    if nothing asks for them explicitly; an explicitly wanted module that does not
    exist raises :class:`GuestImageError`.
    """
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in chain:
            raise GuestImageError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        path = modules.get(name)
        if path is None:
            return
        for dep in module_depends(path):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append(path)

    for name in wanted:
        if _key(name) not in modules:
            raise GuestImageError(f"kernel module {name!r} not found in the kernel package")
        visit(_key(name), ())
    return order
