"""The ``pytest11`` plugin of the driver-author kit (entry point ``virtsdk``).

Installed with virtsdk, so any repository that has virtsdk installed gets it: it asks
pytest to rewrite the assertions of :mod:`virtsdk.testing` (every failed check shows the
values it saw), keeps third-party deprecation notices of virtsdk's dependencies out
of the driver's test report, and names the kit in pytest's header.

``--conformance-report DIR`` writes the outcome of every conformance check that ran, per
driver and feature, to ``DIR/<driver>.json`` (:mod:`virtsdk.testing.report`), which
``virtsdk drivers matrix --results DIR`` turns into passes / fails cells.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("virtsdk.testing.conformance", "virtsdk.testing.observe")

#: the user properties a conformance check carries (set by DriverConformance)
DRIVER_PROPERTY = "virtsdk_driver"
CLASS_PROPERTY = "virtsdk_driver_class"
FEATURE_PROPERTY = "virtsdk_feature"

#: third-party notices a driver author can do nothing about (oslo.messaging still
#: imports eventlet); pytest resets the warning filters per test, so say it here too
_QUIET = (
    "ignore::DeprecationWarning:eventlet.*",
    "ignore::DeprecationWarning:oslo_utils.*",
    "ignore::DeprecationWarning:oslo_service.*",
    "ignore::DeprecationWarning:debtcollector.*",
    "ignore:\\s*Eventlet is deprecated",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("virtsdk", "virtsdk driver conformance kit")
    group.addoption("--conformance-report", metavar="DIR", default=None,
                    help="write each driver's conformance results (feature -> passed / "
                         "failed / skipped, version, date, machine, command) to "
                         "DIR/<driver>.json, for `virtsdk drivers matrix --results DIR`")


def pytest_configure(config: pytest.Config) -> None:
    for line in _QUIET:
        config.addinivalue_line("filterwarnings", line)
    config.addinivalue_line("markers", "virtsdk_feature(name): the feature (a Capabilities "
                                       "flag without 'supports_', or 'lifecycle') a "
                                       "conformance check exercises")
    directory = config.getoption("conformance_report", None)
    if directory:
        config.pluginmanager.register(ReportCollector(config, Path(directory)),
                                      "virtsdk-conformance-report")


def pytest_report_header(config: pytest.Config) -> str:
    return "virtsdk: driver conformance kit (virtsdk.testing.DriverConformance)"


class ReportCollector:
    """Collects the outcome of every conformance check and writes one report per
    driver at the end of the session."""

    def __init__(self, config: pytest.Config, directory: Path) -> None:
        self.directory = directory
        self.command = shlex.join(["python", "-m", "pytest",
                                   *config.invocation_params.args])
        #: nodeid -> (driver, driver class "module:Class", feature, outcome, message)
        self.outcomes: dict[str, tuple[str, str, str, str, str]] = {}
        self.written: list[Path] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        driver = props.get(DRIVER_PROPERTY)
        if not isinstance(driver, str):
            return
        prev = self.outcomes.get(report.nodeid)
        if report.failed:
            outcome, message = "failed", _message(report)
        elif report.skipped:
            outcome, message = "skipped", _message(report)
        elif report.when == "call":
            outcome, message = "passed", ""
        else:
            return
        if prev is not None and prev[3] == "failed":
            return  # a failed call stays failed whatever its teardown did
        self.outcomes[report.nodeid] = (driver, str(props.get(CLASS_PROPERTY, "")),
                                        str(props.get(FEATURE_PROPERTY, "lifecycle")),
                                        outcome, message)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from virtsdk.testing import report as rep

        # one report per driver class: a seeded variant of a driver (same name, another
        # class) run in the same session never mixes with the driver's own results
        by_class: dict[tuple[str, str], list[tuple[str, tuple[str, str, str, str, str]]]] = {}
        for nodeid, row in self.outcomes.items():
            by_class.setdefault((row[0], row[1]), []).append((nodeid, row))
        names = [driver for driver, _cls in by_class]
        for (driver, target), rows in sorted(by_class.items()):
            dist, version = rep.distribution_of(target)
            result = rep.ConformanceReport(
                driver=driver, distribution=dist, version=version,
                virtsdk_version=rep.virtsdk_version(), date=rep.now(),
                machine=rep.machine(), command=self.command, driver_class=target,
                tests=[rep.CheckResult(test=nodeid.split("::")[-1], feature=feature,
                                       outcome=outcome, message=message)
                       for nodeid, (_d, _c, feature, outcome, message) in rows])
            # <driver>.json for the registered class, or when the name is unique
            unique = names.count(driver) == 1 or bool(dist)
            stem = driver if unique else f"{driver}.{target.rpartition(':')[2]}"
            self.written.append(result.write(self.directory, stem))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for path in self.written:
            terminalreporter.write_line(f"virtsdk: conformance report written to {path}")


def _message(report: pytest.TestReport) -> str:
    """The first line of a failure or skip reason, without a traceback."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        text = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = str(getattr(crash, "message", "") or longrepr or "")
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""
