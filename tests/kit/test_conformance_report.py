"""``pytest --conformance-report DIR`` records each conformance check's outcome per
driver and feature, and ``virtsdk drivers matrix --results DIR`` shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.test_seeded_bugs import TEST_FILE
from virtsdk.cli.drivers import matrix_rows, render_matrix
from virtsdk.exceptions import InvalidInput
from virtsdk.testing.report import CheckResult, ConformanceReport, load_reports

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, cls: str, out: Path, select: str) -> pytest.RunResult:
    pytester.makepyfile(test_seeded=TEST_FILE.format(cls=cls))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-k", select,
                                        "-o", "addopts=", "--rootdir", str(pytester.path),
                                        "--conformance-report", str(out))


def test_a_clean_driver_reports_what_passed_and_what_was_not_claimed(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = _run(pytester, "FakeDriver", out, "spawn or cold_migration or resize")
    result.assert_outcomes(passed=5)
    assert f"conformance report written to {out / 'fake.json'}" in result.stdout.str()
    data = json.loads((out / "fake.json").read_text())
    assert data["driver"] == "fake" and data["format"] == 1
    assert data["features"] == {"lifecycle": "passed", "cold_migration": "passed",
                                "resize": "passed"}
    assert "--conformance-report" in data["command"]
    assert data["machine"]["cpus"] >= 1 and data["date"].startswith("20")
    assert {t["outcome"] for t in data["tests"]} == {"passed"}


def test_a_seeded_bug_is_a_failed_feature_and_a_fails_cell(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = _run(pytester, "ConfirmKeepsSourceCopy", out, "spawn_runs or cold_migration")
    result.assert_outcomes(passed=1, failed=1)
    report = load_reports(out)["fake"]
    assert report.features == {"lifecycle": "passed", "cold_migration": "failed"}
    failed = [t for t in report.tests if t.outcome == "failed"]
    assert failed[0].message.startswith("virtsdk.testing.observe.ConformanceFailure: "
                                         "after confirm_migration: host 'contract-src' "
                                         "still holds"), failed[0].message
    assert report.distribution == ""  # a seeded variant is no installed distribution
    matrix = matrix_rows(reports={"fake": report})
    cells = {r["feature"]: r["cells"]["fake"] for r in matrix["rows"]}
    assert cells["cold_migration"] == "fails" and cells["lifecycle"] == "passes"
    assert cells["resize"] == "declared"  # claimed, not run here
    assert cells["migrate_to_same_host"] == "declared"
    assert "- fake: conformance of fake" in render_matrix(matrix, "md")


def test_skipped_checks_leave_the_cell_declared(tmp_path: Path) -> None:
    report = ConformanceReport(driver="fake", distribution="virtsdk-fake", version="1",
                               virtsdk_version="1", date="2026-01-01T00:00:00+00:00",
                               machine={"cpus": 2, "memory_mb": 2048}, command="pytest",
                               tests=[CheckResult(test="test_x", feature="live_migration",
                                                 outcome="skipped", message="why")])
    report.write(tmp_path)
    cells = {r["feature"]: r["cells"]["fake"]
             for r in matrix_rows(reports=load_reports(tmp_path))["rows"]}
    assert cells["live_migration"] == "declared"


def test_results_that_are_no_report_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"format": 1, "driver": "x"}')
    with pytest.raises(InvalidInput, match="x.json is not a conformance report"):
        load_reports(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "virtsdk.cli.main", "drivers", "matrix",
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "is not a conformance report" in proc.stderr


def test_a_seeded_variant_in_the_same_session_gets_its_own_report(
        pytester: pytest.Pytester, tmp_path: Path) -> None:
    out = tmp_path / "results"
    pytester.makepyfile(test_both=TEST_FILE.format(cls="FakeDriver") + '''

class TestVariant(DriverConformance):
    @pytest.fixture
    def driver_factory(self):
        return seeded.factory(seeded.ConfirmKeepsSourceCopy)
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-k",
                                          "cold_migration_moves", "-o", "addopts=",
                                          "--rootdir", str(pytester.path),
                                          "--conformance-report", str(out))
    result.assert_outcomes(passed=1, failed=1)
    assert sorted(p.name for p in out.iterdir()) == [
        "fake.ConfirmKeepsSourceCopy.json", "fake.json"]
    report = load_reports(out)["fake"]  # the installed driver's, not the variant's
    assert report.driver_class == "virtsdk_fake.driver:FakeDriver"
    assert report.distribution == "virtsdk-fake"
    assert report.features == {"cold_migration": "passed"}
