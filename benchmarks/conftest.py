"""Shared helpers for virtsdk's benchmarks (pytest-benchmark).

Run them with ``.venv/bin/python -m pytest benchmarks/`` (the default test run, limited
to ``tests/``, skips them).  Files are named ``bench_*.py``; the hook below collects
them, and their test functions keep the usual ``test_`` prefix.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Module | None:
    """Collect ``benchmarks/bench_*.py`` as test modules."""
    if not (file_path.suffix == ".py" and file_path.name.startswith("bench_")):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest collects it already
    return pytest.Module.from_parent(parent, path=file_path)


def median_us(fn: Callable[[], Any], rounds: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in microseconds over ``rounds`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def report(benchmark: Any, title: str, **numbers: float) -> None:
    """Store ``numbers`` in the benchmark's extra_info and print them."""
    benchmark.extra_info.update({k: round(v, 3) for k, v in numbers.items()})
    shown = ", ".join(f"{k}={v:.1f}" for k, v in numbers.items())
    print(f"\n{title}: {shown}")
