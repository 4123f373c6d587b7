"""Measuring helpers of virtsdk's benchmarks: a median wall time and a report line."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


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
