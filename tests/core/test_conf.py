"""Two ConfigOpts (two embedded hosts) never share option state."""

from __future__ import annotations

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
