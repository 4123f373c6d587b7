"""Product text stands alone: no docstring, option help, CLI output, README or
sample configuration cites a file outside this repository (a reference document,
"section N" of it, the seed document the project started from, ../shared)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: what a citation of text outside the repository looks like
OUTSIDE = re.compile(r"REFERENCE\.md|\bsections? \d|\bthe seed\b|\bseed's\b|\.\./shared",
                     re.IGNORECASE)

#: the product: packages, their metadata, the docs and the sample configuration
PRODUCT_GLOBS = [
    "README.md", "docs/**/*.md", "etc/*", "setup.cfg", "pyproject.toml", "dev.sh",
    "virtsdk/**/*.py", "drivers/*/setup.cfg", "drivers/*/*.md", "drivers/*/virtsdk_*/**/*.py",
    "contrib/*/setup.cfg", "contrib/*/*.md", "contrib/*/virtsdk_*/**/*.py",
]


def product_files() -> list[Path]:
    files = {p for pattern in PRODUCT_GLOBS for p in ROOT.glob(pattern) if p.is_file()}
    return sorted(files)


def test_the_product_text_is_found():
    names = {p.relative_to(ROOT).as_posix() for p in product_files()}
    assert {"README.md", "docs/flows.md", "virtsdk/driver.py",
            "drivers/libvirt/virtsdk_libvirt/config.py"} <= names


def test_no_product_file_cites_text_outside_the_repository():
    hits = []
    for path in product_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("argv", [["drivers", "list"], ["drivers", "show", "fake"],
                                  ["drivers", "show", "libvirt"], ["--help"]])
def test_cli_output_cites_nothing_outside(argv):
    out = subprocess.run([sys.executable, "-m", "virtsdk.cli.main", *argv],
                         capture_output=True, text=True, timeout=120,
                         env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout and not OUTSIDE.search(out.stdout + out.stderr)
