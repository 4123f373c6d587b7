"""The README's support matrix is what ``virtsdk drivers matrix --check fake`` prints."""

from __future__ import annotations

from pathlib import Path

from virtsdk.cli.drivers import matrix_rows, render_matrix
from virtsdk.cli.flows import check_driver

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_matrix_is_generated_by_the_command() -> None:
    checked = {"fake": {r.flow: r.result
                        for r in check_driver("fake", {"fake": {"time_scale": 0.0}})}}
    matrix = matrix_rows(checked)
    matrix["drivers"] = [d for d in matrix["drivers"] if d in ("fake", "libvirt")]
    table = render_matrix(matrix, "md")
    assert table in README.read_text(), (
        "README's matrix is stale; paste `virtsdk drivers matrix --check fake`:\n" + table)
