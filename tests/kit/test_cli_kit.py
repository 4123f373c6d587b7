"""The driver-author commands end to end: ``drivers new`` -> install -> ``drivers list``
-> the conformance run; ``drivers check``; ``drivers matrix``; no third-party
deprecation notices on any command's screen."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from virtsdk.cli.drivers import matrix_rows, render_matrix
from virtsdk.cli.flows import check_driver
from virtsdk.cli.scaffold import write_distribution
from virtsdk.exceptions import Invalid

BIN = Path(sys.executable).parent


def _run(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture
def child_venv(tmp_path: Path) -> Path:
    """A fresh venv that sees this one's packages through a .pth file (so nothing is
    downloaded) and installs into its own site-packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    child_site = next(venv.glob("lib/python*/site-packages"))
    (child_site / "parent.pth").write_text("".join(
        f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()))
    return venv


def test_new_driver_installs_is_listed_and_passes_its_conformance_run(
        tmp_path: Path, child_venv: Path) -> None:
    dist = tmp_path / "virtsdk-hyperx"
    out = _run(str(BIN / "virtsdk"), "drivers", "new", "hyperx", "--dir", str(dist))
    assert out.returncode == 0, out.stderr
    assert (dist / "setup.cfg").read_text().count("hyperx = virtsdk_hyperx.driver:") == 1
    py = str(child_venv / "bin" / "python")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = _run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
               "--no-index", "-e", str(dist), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run(py, "-m", "virtsdk.cli.main", "drivers", "list", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listed = {d["name"]: d for d in json.loads(out.stdout)}
    assert listed["hyperx"]["available"], listed["hyperx"]
    assert listed["hyperx"]["distribution"] == "virtsdk-hyperx"
    out = _run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=dist)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "failed" not in out.stdout, out.stdout
    # the driver's methods are all stubs: it claims and implements nothing
    out = _run(py, "-m", "virtsdk.cli.main", "drivers", "show", "hyperx", cwd=tmp_path)
    assert "implements: lifecycle only" in out.stdout, out.stdout


def test_new_refuses_bad_names_and_non_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="lower-case"):
        write_distribution("Bad-Name", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(Invalid, match="not empty"):
        write_distribution("ok", tmp_path / "full")


def test_drivers_check_passes_the_fake_driver() -> None:
    results = check_driver("fake", {"fake": {"time_scale": 0.0}})
    assert [r.flow for r in results] == ["cold migration + confirm", "resize + confirm",
                                        "resize + revert", "live migration"]
    assert all(r.result == "passed" for r in results), results


def test_drivers_check_reports_a_source_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    import virtsdk.compute.service as service
    from tests.kit import seeded

    real = service.load

    def load(group: str, name: str, base: type) -> type:
        return seeded.LeavesSourceRunning if name == "fake" else real(group, name, base)

    monkeypatch.setattr(service, "load", load)
    results = {r.flow: r for r in check_driver("fake", {"fake": {"time_scale": 0.0}})}
    cold = results["cold migration + confirm"]
    assert cold.result == "failed", results
    assert "the guest should run on ['check-b'] but runs on ['check-a', 'check-b']" in \
        "; ".join(cold.problems), cold.problems


def test_matrix_lists_every_feature_and_driver() -> None:
    matrix = matrix_rows()
    assert {"fake", "libvirt"} <= set(matrix["drivers"])
    features = [r["feature"] for r in matrix["rows"]]
    assert "live_migration" in features and "cold_migration" in features
    md = render_matrix(matrix, "md")
    assert md.splitlines()[0].startswith("| group | feature |")
    rst = render_matrix(matrix, "rst")
    assert rst.splitlines()[0].startswith("=====")
    assert json.loads(render_matrix(matrix, "json")) == matrix


@pytest.mark.parametrize("argv", [("drivers", "list"), ("drivers", "matrix"),
                                  ("drivers", "show", "fake")])
def test_commands_print_no_third_party_deprecation_notice(argv: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    out = _run(str(BIN / "virtsdk"), *argv, env=env)
    assert out.returncode == 0, out.stderr
    assert "Deprecat" not in out.stderr, out.stderr


def test_drivers_list_table_wraps_and_never_truncates() -> None:
    """On a narrow terminal every cell folds onto more lines: joined back, each
    column holds every driver's whole name, distribution and capabilities."""
    env = {**os.environ, "COLUMNS": "60"}
    out = _run(str(BIN / "virtsdk"), "drivers", "list", env=env)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and "..." not in out.stdout, out.stdout
    cols: list[str] = []
    for line in out.stdout.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            cols = cells if not cols else [a + b for a, b in zip(cols, cells, strict=True)]
    listed = json.loads(_run(str(BIN / "virtsdk"), "drivers", "list", "--json").stdout)
    for entry in listed:
        assert entry["name"] in cols[0] and entry["distribution"] in cols[1]
        for cap in entry["capabilities"]:
            assert cap in cols[4], (cap, cols[4])
