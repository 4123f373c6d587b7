"""Two ConfigOpts (two embedded hosts) never share option state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from oslo_config import cfg

from virtsdk.conf import register_all


def test_overrides_do_not_leak_between_config_objects():
    a, b = register_all(cfg.ConfigOpts()), register_all(cfg.ConfigOpts())
    a([]), b([])
    a.set_override("max_concurrent_live_migrations_outbound", 7, group="compute")
    a.set_override("connection", "sqlite:///a.sqlite", group="database")
    a.set_override("permit_post_copy", True, group="live_migration")
    assert b.compute.max_concurrent_live_migrations_outbound == 1
    assert b.database.connection is None
    assert b.live_migration.permit_post_copy is False
    assert a.compute.max_concurrent_live_migrations_outbound == 7


def test_registering_twice_is_harmless():
    conf = register_all(register_all(cfg.ConfigOpts()))
    conf([])
    assert conf.compute.shutdown_timeout == 60


def test_sample_config_is_generated_from_the_options(tmp_path: Path) -> None:
    """``etc/virtsdk.conf.sample`` is what oslo-config-generator writes from the
    registered options today (regenerate it with the command in its generator file)."""
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "virtsdk.conf.sample"
    subprocess.run([str(Path(sys.executable).with_name("oslo-config-generator")),
                    "--config-file", str(root / "etc/virtsdk-config-generator.conf"),
                    "--output-file", str(out)],
                   check=True, cwd=root, capture_output=True)
    assert out.read_text() == (root / "etc/virtsdk.conf.sample").read_text(), (
        "etc/virtsdk.conf.sample is stale: run .venv/bin/oslo-config-generator "
        "--config-file etc/virtsdk-config-generator.conf")
