"""The README's support matrix is what ``virtsdk drivers matrix --results doc/conformance``
prints, and the results it is made of are real conformance runs of the shipped drivers."""

from __future__ import annotations

from pathlib import Path

from virtsdk.cli.drivers import matrix_rows, render_matrix
from virtsdk.testing.report import load_reports

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("fake", "libvirt", "qemu")


def test_readme_matrix_is_generated_by_the_command() -> None:
    matrix = matrix_rows(reports=load_reports(ROOT / "doc" / "conformance"))
    matrix["drivers"] = [d for d in matrix["drivers"] if d in SHIPPED]
    table = render_matrix(matrix, "md")
    assert table in (ROOT / "README.md").read_text(), (
        "README's matrix is stale; run ./dev.sh conformance, or paste "
        "`virtsdk drivers matrix --results doc/conformance`:\n" + table)


def test_shipped_results_are_runs_of_the_kit_on_each_shipped_driver() -> None:
    reports = load_reports(ROOT / "doc" / "conformance")
    assert sorted(reports) == sorted(SHIPPED)
    for name, report in reports.items():
        assert report.distribution == f"virtsdk-{name}", report.distribution
        assert "--conformance-report doc/conformance" in report.command
        assert report.tests and report.features["lifecycle"] == "passed", report.features
        # every check of the kit ran (or said why not) for every driver
        assert len({t.test for t in report.tests}) == len(report.tests) >= 20
