"""Shared helpers for virtsdk's benchmarks (pytest-benchmark).

Run them with ``.venv/bin/python -m pytest benchmarks/`` (the default test run, limited
to the test trees named by ``testpaths`` in ``pyproject.toml``, skips them).  Files are
named ``bench_*.py``; the hook below collects them, and their test functions keep the
usual ``test_`` prefix.  The measuring helpers are in :mod:`benchmarks.measure`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Module | None:
    """Collect ``benchmarks/bench_*.py`` as test modules."""
    if not (file_path.suffix == ".py" and file_path.name.startswith("bench_")):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest collects it already
    return pytest.Module.from_parent(parent, path=file_path)
