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


def test_demo_on_a_driver_other_than_fake_skips_the_fake_only_steps_and_cleans_up(capsys):
    import argparse

    from rich.console import Console

    from virtsdk.cli.demo import Demo

    args = argparse.Namespace(driver="fake", time_scale=0.002, state_dir=None, set=[])
    console = Console(width=200)
    demo = Demo(args, console)
    demo.fake = False  # as for any driver that is not the fake one
    assert demo.run()
    fabric_host = demo.cloud.computes  # stopped: services gone
    assert fabric_host == {}
    console.print(demo.summary())
    out = capsys.readouterr().out
    assert "live migrate + abort" in out and "fake driver only" in out
    assert "stream" not in [s.instance for s in demo.steps if s.status != "skipped"]
    from virtsdk_fake.fabric import get_fabric

    fabric = get_fabric(demo.cloud.conf.fake.fabric)
    left = {h.name: list(h.instances) + list(h.resize_copies) + list(h.leftovers)
            for h in fabric.hosts.values()}
    assert all(not v for v in left.values()), left
