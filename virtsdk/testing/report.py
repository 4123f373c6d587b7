"""Machine-readable conformance results: what ``--conformance-report DIR`` writes and
``virtsdk drivers matrix --results DIR`` reads.

One JSON file per driver, ``DIR/<driver>.json``::

    {"format": 1, "driver": "libvirt", "distribution": "virtsdk-libvirt",
     "driver_class": "virtsdk_libvirt.driver:LibvirtDriver",
     "version": "0.1.0", "virtsdk_version": "0.1.0",
     "date": "2026-11-26T16:40:00+00:00",
     "machine": {"hostname": ..., "platform": ..., "cpus": 2, "memory_mb": 24000,
                 "python": "3.11.2"},
     "command": "python -m pytest ... --conformance-report doc/conformance",
     "features": {"declarations": "passed", "lifecycle": "passed",
                  "cold_migration": "passed", ...},
     "tests": [{"test": "test_...", "feature": "cold_migration",
                "outcome": "passed", "message": ""}, ...]}

The features are those of the matrix (a :class:`~virtsdk.driver.Capabilities` flag
without ``supports_``), ``lifecycle`` and ``declarations`` (every claimed feature's
methods are implemented).  A feature's result is ``failed`` when any of its checks
failed, ``passed`` when at least one passed and none failed, ``skipped`` when every
check was skipped (the driver does not claim it, or the test set-up could not exercise
it).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from virtsdk.exceptions import InvalidInput
from virtsdk.plugins import COMPUTE_DRIVERS

FORMAT = 1
#: the feature of the checks that every driver must pass (spawn, list, destroy ...)
LIFECYCLE = "lifecycle"
OUTCOMES = ("passed", "failed", "skipped")


@dataclass
class CheckResult:
    """One conformance check's outcome (``message``: the first line of the failure or
    of the skip reason)."""

    test: str
    feature: str
    outcome: str
    message: str = ""


@dataclass
class ConformanceReport:
    """The conformance results of one driver, from one run."""

    driver: str
    distribution: str
    version: str
    virtsdk_version: str
    date: str
    machine: dict[str, Any]
    command: str
    tests: list[CheckResult] = field(default_factory=list)
    #: ``module:Class`` of the driver that ran
    driver_class: str = ""
    format: int = FORMAT

    @property
    def features(self) -> dict[str, str]:
        """Feature -> ``passed`` / ``failed`` / ``skipped``, in the order first seen."""
        seen: dict[str, list[str]] = {}
        for t in self.tests:
            seen.setdefault(t.feature, []).append(t.outcome)
        return {f: ("failed" if "failed" in outs else
                    "passed" if "passed" in outs else "skipped")
                for f, outs in seen.items()}

    def to_json(self) -> str:
        data = asdict(self)
        data["features"] = self.features
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> ConformanceReport:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            tests = [CheckResult(**t) for t in data["tests"]]
            bad = [t.outcome for t in tests if t.outcome not in OUTCOMES]
            if bad:
                raise ValueError(f"unknown outcomes {bad}")
            return cls(driver=str(data["driver"]), distribution=str(data["distribution"]),
                       version=str(data["version"]),
                       virtsdk_version=str(data["virtsdk_version"]),
                       date=str(data["date"]), machine=dict(data["machine"]),
                       command=str(data["command"]), tests=tests,
                       driver_class=str(data.get("driver_class", "")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(field="results", reason=f"{source} is not a conformance "
                               f"report: {exc}") from None

    def write(self, directory: Path, stem: str | None = None) -> Path:
        """Write ``directory/<stem or driver>.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{stem or self.driver}.json"
        path.write_text(self.to_json())
        return path


def load_reports(directory: Path) -> dict[str, ConformanceReport]:
    """Driver name -> its report, for every ``*.json`` in ``directory`` (of two reports
    of one driver name, the one of the installed distribution's class)."""
    if not directory.is_dir():
        raise InvalidInput(field="results", reason=f"{directory} is not a directory")
    reports: dict[str, ConformanceReport] = {}
    for path in sorted(directory.glob("*.json")):
        report = ConformanceReport.from_json(path.read_text(), str(path))
        if report.driver not in reports or report.distribution:
            reports[report.driver] = report
    return reports


def distribution_of(target: str) -> tuple[str, str]:
    """(distribution, version) whose ``virtsdk.compute_drivers`` entry point names
    ``target`` (``module:Class``); ``("", "")`` when none does (a test's own driver
    class, a seeded variant)."""
    for ep in importlib.metadata.entry_points(group=COMPUTE_DRIVERS):
        if ep.value.replace(" ", "") == target and ep.dist is not None:
            return ep.dist.name, ep.dist.version
    return "", ""


def machine() -> dict[str, Any]:
    """The machine a run happened on, as a report records it."""
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    return {"hostname": platform.node(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "memory_mb": pages * page // 2 ** 20,
            "python": platform.python_version()}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def virtsdk_version() -> str:
    try:
        return importlib.metadata.version("virtsdk")
    except importlib.metadata.PackageNotFoundError:
        return ""
