"""Sphinx configuration of the virtsdk author's guide and API reference."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath("tutorial"))

project = "virtsdk"
author = "the virtsdk developers"
release = "0.1.0"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}
# cross-references to third-party classes (oslo.config, libvirt, lxml) stay plain text
nitpicky = False
suppress_warnings = ["ref.python"]


def _write_matrix() -> None:
    """The support matrix of the installed drivers, as ``virtsdk drivers matrix``
    prints it, for conformance.rst to include."""
    from pathlib import Path

    from virtsdk.cli.drivers import matrix_rows, render_matrix
    from virtsdk.testing.report import load_reports

    results = Path(__file__).resolve().parent / "conformance"

    out = os.path.join(os.path.dirname(__file__), "_generated")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "matrix.rst"), "w", encoding="utf-8") as f:
        f.write(render_matrix(matrix_rows(reports=load_reports(results)), "rst") + "\n")


_write_matrix()
exclude_patterns.append("_generated")
