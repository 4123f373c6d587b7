"""``virtsdk demo`` runs every flow and exits 0 without a terminal."""

from __future__ import annotations

from virtsdk.cli.main import main


def test_demo_exits_zero_and_prints_summary(capsys):
    assert main(["demo", "--time-scale", "0.002"]) == 0
    out = capsys.readouterr().out
    assert "all steps succeeded" in out
    for step in ("resize small->medium + confirm", "resize medium->large + revert",
                 "cold migrate", "live migrate (busy guest)", "live migrate + abort",
                 "injected failure, rollback"):
        assert step in out
    assert "downtime steps" in out and "cancelled" in out
